import sys

if "--memory" in sys.argv[1:]:  # issue 7's memory targets: a separate run (bench/memory.py)
    from bench.memory import main as memory_main

    raise SystemExit(memory_main([a for a in sys.argv[1:] if a != "--memory"]))

from bench.harness import main

raise SystemExit(main())
