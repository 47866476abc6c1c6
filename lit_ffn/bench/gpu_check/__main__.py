"""``python -m lit_ffn.bench.gpu_check …`` (what ``scripts/gpu_check.sh`` runs)."""

import sys

from lit_ffn.bench.gpu_check.cli import main

sys.exit(main())
