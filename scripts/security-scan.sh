#!/usr/bin/env bash
# The old entry point of the weekly security scan (cron `0 3 * * 0`): runs `security-scan` with
# the same arguments; exit 0 nothing high or critical, 1 high, 2 critical, 3 the scan failed.
. "$(dirname "${BASH_SOURCE[0]}")/lib/command.sh" && run_command security-scan "$@"
