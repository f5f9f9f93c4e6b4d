"""`loopauth.command.Command`, the type plugins register in `register_commands`."""

from .cli.parser import Command as Command
