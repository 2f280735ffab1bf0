"""``zoo list``: registered members and the trained runs found under a folder."""

from __future__ import annotations

from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("list", help="registered members (params, default size) and trained runs with key metrics")
    p.add_argument("pattern", nargs="?", default="*", help="shell-style filter on member names")
    p.add_argument("--runs", default="runs", help="folder searched for run/ensemble folders (default: runs)")
    p.add_argument(
        "--count-params", action="store_true", help="build each member to count its weights (slow for large ones)"
    )
    p.set_defaults(func=run)


def _count_params(name: str, size: int) -> str:
    try:
        from zoo.registry import create_model

        return f"{create_model(name, 8, size).count_params() / 1e6:.2f}M"
    except Exception:  # noqa: BLE001 - listing must not fail on one member
        return "?"


def run(args) -> int:
    from zoo.artifacts import read_card
    from zoo.errors import ZooError
    from zoo.registry import get_spec, list_models

    print(
        f"{'member':<18} {'family':<11} {'size':>4}"
        + (f" {'weights':>8}" if args.count_params else "")
        + "  description"
    )
    for name in list_models(args.pattern):
        spec = get_spec(name)
        count = f" {_count_params(name, spec.default_image_size):>8}" if args.count_params else ""
        print(f"{name:<18} {spec.family:<11} {spec.default_image_size:>4}{count}  {spec.description}")
        hyper = ", ".join(f"{k}={v}" for k, v in spec.defaults.items())
        print(f"{'':<36}hyper-parameters: {hyper or 'none'}")
    root = Path(args.runs)
    cards = sorted(root.rglob("card.json")) if root.is_dir() else []
    if cards:
        print(f"\nartifacts under {root}/:")
        print(f"{'folder':<48} {'kind':<8} {'what':<16} {'val acc':>8} {'test acc':>8}")
    for c in cards:
        try:
            card = read_card(c.parent, verify=False)
        except ZooError:
            continue
        m = card.get("metrics", {})
        what = card.get("member") or card.get("method") or card.get("source_kind") or ""

        def acc(s, m=m):
            return f"{m[s]['accuracy']:.4f}" if isinstance(m.get(s), dict) and "accuracy" in m[s] else "-"

        print(f"{str(c.parent.relative_to(root)):<48} {card['kind']:<8} {what:<16} {acc('val'):>8} {acc('test'):>8}")
    return 0
