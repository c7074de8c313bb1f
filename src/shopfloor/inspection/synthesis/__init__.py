"""Defect synthesis: a class-conditional GAN for rare defect classes (:mod:`.task`), its plain modules
(:mod:`.networks`), DiffAugment, the adversarial Lightning glue and quality measures."""
