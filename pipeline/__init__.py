"""synth: builds training data for Korean safety classifiers.

The package is a pipeline of stages (generate, then the filters and exporters that follow)
driven by `pipeline.runner`, which owns checkpoints, resume and progress; `pipeline.cli` is the
`synth` command.
"""

__version__ = "0.1.0"
