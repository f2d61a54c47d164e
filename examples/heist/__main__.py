from examples.heist.run import main

raise SystemExit(main())
