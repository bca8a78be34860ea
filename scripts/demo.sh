#!/usr/bin/env bash
# Placeholder-free tour: filled in as the pdb commands land.
set -euo pipefail
pdb="$1"
"$pdb"
