"""Plain baselines that `murid bench quality` runs beside MURID on the same data and budget:
AdaBN, MixStyle-style statistics mixing and DACS self-training. Each is a stage (or a stage
configuration) of the engine's one training loop, not a script of its own."""
