#!/usr/bin/env bash
# The old entry point, kept for cron lines and runbooks: runs `backup-all` with the same
# arguments, environment and exit codes.
. "$(dirname "${BASH_SOURCE[0]}")/lib/command.sh" && run_command backup-all "$@"
