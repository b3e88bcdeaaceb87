from ptm_core.smollm2.build import main

if __name__ == "__main__":
    raise SystemExit(main())
