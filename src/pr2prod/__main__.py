from pr2prod.cli import main

raise SystemExit(main())
