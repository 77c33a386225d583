"""The ``surrogate`` command line: one group, subcommands imported only when they run.

Lazy loading keeps ``surrogate serve`` free of scikit-learn, scipy and onnx, so it works in an
install without the ``train`` extra.
"""

from __future__ import annotations

import importlib

import click

# name -> "module:attribute"; a subcommand's module is imported only when it is invoked.
COMMANDS = {
    "train": "training.cli.train:train",
    "demo": "training.cli.demo:demo",
    "serve": "training.cli.serve:serve",
    "predict": "training.cli.predict:predict",
    "sweep": "training.cli.sweep:sweep",
    "export": "training.cli.export:export",
    "evaluate": "training.cli.evaluate:evaluate",
    "design": "training.cli.design:design",
    "suggest": "training.cli.suggest:suggest",
    "loop": "training.cli.loop:loop",
    "simulate": "training.cli.simulate:simulate",
    "sensitivity": "training.cli.sensitivity:sensitivity",
    "models": "training.cli.models:models",
    "show": "training.cli.models:show",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        return getattr(importlib.import_module(module_name), attr)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="surrogate-serving")
def main() -> None:
    """Train, check and serve neural surrogates of simulations."""
