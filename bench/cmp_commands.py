"""6. `loopauth status`, `providers` and `--help` against a bare `python -c pass` (wheel)."""

from __future__ import annotations

from harness import (
    Context,
    Row,
    Target,
    child_env,
    emu_config,
    interleaved,
    login_no_browser,
    ratio_row,
    split_rounds,
    write_config,
)

NAME = "commands"
TITLE = "Everyday commands"
DESCRIPTION = """\
Process start to exit of `loopauth --config CFG status` (one provider, one stored token),
`loopauth --config CFG providers` and `loopauth --help`, each against `python -c pass`, all
four interleaved in the wheel venv. Target: each ≤ 3x."""

TARGET = Target("<=", 3.0)


def run(ctx: Context) -> list[Row]:
    """Log in once, then time the three commands and the bare interpreter side by side."""
    from loopauth.emulator import OAuthEmulator

    venv = ctx.venv()
    emu = ctx.stack.enter_context(OAuthEmulator())
    work = ctx.scratch("commands")
    config = write_config(work, emu_config(emu.url))
    env = child_env(work / "home")
    login_no_browser(venv.loopauth, config, env, work)
    cfg = ["--config", str(config)]
    commands = {
        "pass": ([venv.python, "-c", "pass"], env),
        "status": ([venv.loopauth, *cfg, "status"], env),
        "providers": ([venv.loopauth, *cfg, "providers"], env),
        "help": ([venv.loopauth, "--help"], env),
    }
    rounds = split_rounds(max(5, ctx.runs // 2), 5)
    ctx.log(f"commands: {sum(rounds)} runs of each of {', '.join(commands)}")
    times = interleaved(commands, work, rounds, log=ctx.log)
    labels = {
        "status": "`loopauth status`",
        "providers": "`loopauth providers`",
        "help": "`loopauth --help`",
    }
    return [
        ratio_row(NAME, label, "`python -c pass`", label, times["pass"], times[key], target=TARGET)
        for key, label in labels.items()
    ]
