"""The results JSON (bench/results/latest.json): loading it, saving it (atomically, after every
suite, so that a failed or stopped run keeps the suites it finished), stamping each suite with the
date and machine it was measured on, and writing every output of a run: JSON, plots, markdown."""
import json
import os

from .machine import machine_desc
from .plots import PLOTS, make_plots
from .render import render_markdown
from .util import log


def load_json(path):
    with open(path) as f:
        return json.load(f)


def save_json(path, r, indent=2):
    """Writes r to path through a temporary file: a reader never sees half a file."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(r, f, indent=indent)
    os.replace(path + ".tmp", path)


def checkpoint(r, suite, measured, out_json):
    """Stamps `suite` (when this run measured it) and saves the JSON: a run that fails or is
    stopped later keeps the suites it finished (`bench.py --plots-only` redraws the markdown)."""
    if suite not in measured or suite not in r:
        return
    r.setdefault("suite_dates", {})[suite] = r["machine"]["date"]
    r.setdefault("suite_machines", {})[suite] = machine_desc(r["machine"])
    save_json(out_json, r)


def plot_images(r, md_dir, rerun, plots, allow_install):
    """{suite: path relative to the markdown} of the plots to show: those made now (into img/ next
    to the markdown), and a plot of an earlier run for a suite this run did not redo."""
    img_dir = os.path.join(md_dir, "img")
    made = make_plots(r, img_dir, allow_install) if plots else {}
    images = {}
    for key, name in PLOTS.items():
        path = made.get(key)
        if path is None and key not in rerun and os.path.exists(os.path.join(img_dir, name)):
            path = os.path.join(img_dir, name)
        if path and r.get(key):
            images[key] = os.path.relpath(path, md_dir)
    return images


def write_outputs(r, out_json, out_md, rerun, plots, allow_install):
    """The JSON, the plots (for suites in r; into img/ next to the markdown) and the markdown."""
    if out_json:
        save_json(out_json, r)
    md_dir = os.path.dirname(os.path.abspath(out_md))
    images = plot_images(r, md_dir, rerun, plots, allow_install)
    os.makedirs(md_dir, exist_ok=True)
    with open(out_md, "w") as f:
        f.write(render_markdown(r, images))
    log(f"wrote {out_json or '(results unchanged)'} and {out_md}")
