from maskline.infra.compose.run import main

raise SystemExit(main())
