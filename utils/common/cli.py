"""Help text that shows one spelling per option.

The scripts accept the reference's single-dash spellings (``-task_name``) beside the
double-dash ones (``--task_name``); the help and usage show only the latter, and
one-letter short options (``-i``, ``-o``).
"""

from __future__ import annotations

import argparse
import copy


def shown_spellings(option_strings: list[str]) -> list[str]:
    """The spellings of an option that help shows: all of them, unless it has a
    ``--long`` one, in which case single-dash spellings longer than one letter are left out."""
    if not any(s.startswith("--") for s in option_strings):
        return list(option_strings)
    return [s for s in option_strings if s.startswith("--") or len(s) == 2]


def _with_shown_spellings(action: argparse.Action) -> argparse.Action:
    if not action.option_strings:
        return action
    shown = copy.copy(action)
    shown.option_strings = shown_spellings(action.option_strings)
    return shown


class OneSpellingHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Help and usage with :func:`shown_spellings` and each option's default; parsing is
    unchanged."""

    def _format_usage(self, usage, actions, groups, prefix):  # noqa: ANN001
        return super()._format_usage(
            usage, [_with_shown_spellings(a) for a in actions], groups, prefix
        )

    def _format_action_invocation(self, action: argparse.Action) -> str:
        return super()._format_action_invocation(_with_shown_spellings(action))
