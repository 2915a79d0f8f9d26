#!/usr/bin/env python3
"""Compare two predictions CSVs row by row: `dfq eval --predictions` and
tools/ort_eval.js write the same format (header `path,label,prediction,top5`).

    compare_predictions.py A.csv B.csv [--json OUT]

Both files must list the same paths in the same order with the same labels
(else an error naming the first row that differs). Prints the number of
images, the top-1 accuracy of A and of B, their top-1 agreement (rows with the
same prediction: count and percent) and the first (up to) 10 rows where the
predictions differ. --json OUT also writes those figures:
{"images", "correct_a", "correct_b", "top1_a", "top1_b", "agree",
"agree_percent", "disagree", "first_disagreements": [{"row", "path", "label",
"a", "b"}], "a", "b"}. Exit code 0 unless an input is invalid (1; 2: usage).
Standard library only (Debian's /usr/bin/python3).
"""
import argparse
import csv
import json
import os
import sys

HEADER = ["path", "label", "prediction", "top5"]
SHOWN = 10


class InputError(Exception):
    pass


def read_predictions(path):
    """[(path, label, prediction)] of one CSV, validated."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f, strict=True))
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror or e})")
    except (csv.Error, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not a valid CSV ({e})")
    if not rows:
        raise InputError(f"{path}: empty, expected the header {','.join(HEADER)}")
    if rows[0] != HEADER:
        raise InputError(f"{path}: header is {','.join(rows[0])!r}, expected {','.join(HEADER)!r}")
    out = []
    for i, row in enumerate(rows[1:], start=2):
        if len(row) != len(HEADER):
            raise InputError(f"{path}: line {i} has {len(row)} fields, expected {len(HEADER)}")
        try:
            label, prediction = int(row[1]), int(row[2])
        except ValueError:
            raise InputError(f"{path}: line {i}: label {row[1]!r} or prediction {row[2]!r} is not an integer")
        out.append((row[0], label, prediction))
    if not out:
        raise InputError(f"{path}: no rows after the header")
    return out


def compare(a_path, b_path):
    a, b = read_predictions(a_path), read_predictions(b_path)
    for i, (ra, rb) in enumerate(zip(a, b)):
        if ra[0] != rb[0]:
            raise InputError(f"row {i + 1}: path {ra[0]!r} in {a_path} but {rb[0]!r} in {b_path}: not the same images in the same order")
        if ra[1] != rb[1]:
            raise InputError(f"row {i + 1} ({ra[0]}): label {ra[1]} in {a_path} but {rb[1]} in {b_path}")
    if len(a) != len(b):
        longer, path = (a, a_path) if len(a) > len(b) else (b, b_path)
        raise InputError(f"{a_path} has {len(a)} rows, {b_path} {len(b)}: row {min(len(a), len(b)) + 1} "
                         f"({longer[min(len(a), len(b))][0]!r}) is only in {path}")
    n = len(a)
    correct_a = sum(1 for p, label, pred in a if pred == label)
    correct_b = sum(1 for p, label, pred in b if pred == label)
    differing = [(i, ra, rb) for i, (ra, rb) in enumerate(zip(a, b)) if ra[2] != rb[2]]
    agree = n - len(differing)
    return {
        "a": a_path,
        "b": b_path,
        "images": n,
        "correct_a": correct_a,
        "correct_b": correct_b,
        "top1_a": round(100.0 * correct_a / n, 4),
        "top1_b": round(100.0 * correct_b / n, 4),
        "agree": agree,
        "agree_percent": round(100.0 * agree / n, 4),
        "disagree": len(differing),
        "first_disagreements": [{"row": i + 1, "path": ra[0], "label": ra[1], "a": ra[2], "b": rb[2]}
                                for i, ra, rb in differing[:SHOWN]],
    }


def write_json(path, r):
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(r, f, indent=1)
            f.write("\n")
        os.replace(tmp, path)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise InputError(f"{path}: cannot write ({e.strerror or e})")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", metavar="A.csv")
    parser.add_argument("b", metavar="B.csv")
    parser.add_argument("--json", metavar="OUT", help="also write the figures as JSON to OUT")
    args = parser.parse_args()
    try:
        r = compare(args.a, args.b)
        n = r["images"]
        print(f"images          {n}")
        print(f"top-1 A         {r['top1_a']:.2f} % ({r['correct_a']}/{n})  {args.a}")
        print(f"top-1 B         {r['top1_b']:.2f} % ({r['correct_b']}/{n})  {args.b}")
        print(f"top-1 agreement {r['agree']}/{n} ({r['agree_percent']:.2f} %) same prediction")
        if r["disagree"]:
            more = f", the first {SHOWN}" if r["disagree"] > SHOWN else ""
            print(f"disagreements   {r['disagree']}{more}:")
            for d in r["first_disagreements"]:
                print(f"  row {d['row']}: {d['path']}  label {d['label']}  A {d['a']}  B {d['b']}")
        if args.json:
            write_json(args.json, r)
    except InputError as e:
        print(f"compare_predictions: error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
