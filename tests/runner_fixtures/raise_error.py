"""Dies with an uncaught exception three frames deep, raised from another one (a chained traceback)."""


def load_checkpoint(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError as exc:
        raise RuntimeError(f"cannot resume training from {path}") from exc


def main() -> None:
    print("training", flush=True)
    load_checkpoint("does-not-exist.ckpt")


main()
