"""python -m tinygrad_rnn.viz MODEL [options] -o out.svg: see cli.py or --help."""
from .cli import main

raise SystemExit(main())
