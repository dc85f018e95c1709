"""``mailgate init DIR``: a folder to start from — the baseline and the loopback testbed
copied from the shipped scenarios, with a short README, ready to edit."""

from __future__ import annotations

import argparse
from pathlib import Path

from mailgate.commands.arguments import Subparsers

#: What ``init`` copies: the baseline and the testbed, which extends the baseline (so the
#: copy's edits to the baseline reach the testbed too).
STARTERS = ("drive-network", "loopback-testbed")

README = """\
# {name}

Scenarios copied by `mailgate init` from the ones that ship with mailgate {version}.

- `drive-network.toml`: the baseline, the provider's system with 30,000 mailboxes
  over one day; every assumption is commented with its source.
- `loopback-testbed.toml`: the same topology as real relays on this machine's
  loopback addresses; it `extends` the baseline here, so your edits reach both.

Start with:

    mailgate check drive-network.toml        # offered load per gateway, warnings
    mailgate run drive-network.toml          # the model: latency, utilisation, SLO
    mailgate realnet probe loopback-testbed.toml   # a real mail to yourself

A file of your own can `extends = "drive-network.toml"` (this folder) or name a shipped
scenario (`extends = "peak-hour"`); `mailgate scenarios` lists them.
"""


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser(
        "init",
        help="copy the baseline and the testbed scenarios into a folder to edit",
        description="Create DIR (or use it if it is empty) and copy the shipped baseline "
        "(drive-network.toml) and loopback testbed (loopback-testbed.toml) into it, with a "
        "short README. Nothing is overwritten.",
    )
    p.add_argument("dir", help="folder to create")
    p.set_defaults(func=init_command)


def init_command(args: argparse.Namespace) -> int:
    """Copy the starter scenarios into ``args.dir``."""
    written = init_folder(Path(args.dir))
    for path in written:
        print(f"wrote {path}")
    print(f"\nNext: mailgate check {Path(args.dir) / 'drive-network.toml'}")
    return 0


def init_folder(folder: Path) -> list[Path]:
    """Write the starters into ``folder``; refuse (UserError) rather than overwrite."""
    import mailgate
    from mailgate.sim.scenario.errors import UserError
    from mailgate.sim.scenario.shipped import shipped_path

    targets = {folder / f"{name}.toml": shipped_path(name) for name in STARTERS}
    targets[folder / "README.md"] = None
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{folder}: exists and is not a folder")
    clashes = [str(p) for p in targets if p.exists()]
    if clashes:
        raise UserError(f"{clashes[0]}: already exists; init overwrites nothing")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for target, source in targets.items():
            if source is None:
                text = README.format(name=folder.name, version=mailgate.__version__)
            else:
                text = source.read_text(encoding="utf-8")
            target.write_text(text, encoding="utf-8")
    except OSError as e:
        raise UserError(f"{folder}: cannot write: {e.strerror}") from e
    return list(targets)
