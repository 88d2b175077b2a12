"""``python -m rrr_trainer ...`` (and ``accelerate launch -m rrr_trainer ...``): the ``rrr train``
commands, for launchers that need a module rather than a console script."""

from rrr_agent.cli.train import app as train_app

if __name__ == "__main__":
    train_app(prog_name="python -m rrr_trainer")
