"""What every application uses, and nothing application-specific.

- ``task``: the :class:`~shopfloor.core.task.Task` base (fit / evaluate / predict / save / load / export);
  ``registry``: task names -> classes, found through the ``shopfloor.tasks`` entry points.
- ``config`` (strict pydantic configs, YAML and CLI overrides), ``errors`` (messages that say what to do).
- ``artifact`` (manifest + safetensors + ONNX, hashed), ``runtime`` (the one inference path: ONNX Runtime),
  ``export`` (rebuild and check the graph).
- ``training/``: Lightning glue (generic supervised module, trainer factory); ``quiet``: the library-chatter filter.
- ``ranges``: training ranges of the inputs and the out-of-range check every task uses.
- ``report`` (HTML + PNG), ``metrics`` (classification), ``split`` (stratified), ``heads`` (softmax output),
  ``explain/`` (Grad-CAM, integrated gradients and their figures).

Rule: ``core`` imports no application package and holds nothing about one application's data; what it holds is
generic (an image overlay, an attribution chart) and meant for the next applications too.
"""
