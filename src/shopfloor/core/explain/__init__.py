"""What a model looked at: Grad-CAM for CNNs (``gradcam``), integrated gradients over input columns and their
figures (``attribution``)."""
