"""Plain torch nn.Modules: exportable, no training logic inside."""
