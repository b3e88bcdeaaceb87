from ptm_core.smollm2.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
