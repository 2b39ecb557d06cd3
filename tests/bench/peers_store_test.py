#!/usr/bin/env python3
"""bench/peers.py's round-robin results store: one table per agent count and agents' size, partial reruns
(--rr-configs) merged only into a table of the same machine and settings, old results migrated,
rows rendered in one order with the rows of another run marked. No servers run: these are the
functions that decide what docs/peers.md shows."""
import copy
import importlib.util
import os
import sys
import unittest

BENCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench")
sys.path.insert(0, BENCH)
spec = importlib.util.spec_from_file_location("peers", os.path.join(BENCH, "peers.py"))
peers = importlib.util.module_from_spec(spec)
spec.loader.exec_module(peers)

LABELS = {"kvault": "kvault --ram-cache 64 (+ disk tier)", "kvault-no-persist": "kvault --ram-cache 64 --no-persist",
          "llama-server": "llama-server defaults (--cache-ram 8192)", "llama-server-budget": "llama-server --cache-ram 64",
          "llama-server-slots": "llama-server defaults + slot save/restore by the client"}
MACHINE = "Test CPU, 2 cores"


def config(agents=32, reps=3):
    return {"agents": agents, "reps": reps, "system_words": 500, "context_words": [1000, 1500], "gen_tokens": 16,
            "ram_budget_mib": 64, "pool_tokens": 8192, "slots": 4, "threads": 2, "model": "m.gguf",
            "llama_cpp_tree": "abc", "kvault_source": "src1/cm1"}


def run(only, date, next_turn, agents=32, machine=MACHINE, reps=3):
    st = {"median": next_turn, "min": next_turn, "max": next_turn, "n": reps}
    return {"config": config(agents, reps), "date": date, "machine": machine,
            "servers": {LABELS[o]: {"flags": o, "cold_p50_runs": st, "next_turn_p50_runs": st,
                                    "after_restart_p50_runs": st, "next_turn_cached_fraction": 0.5,
                                    "after_restart_cached_fraction": 0.5, "requests": []} for o in only}}


def results():
    return {"machine": {"date": "D", "cpu": "Test CPU", "isa": "AVX2", "cores": 2, "memory_gib": 8, "kernel": "6"},
            "model": "m.gguf", "model_desc": "tiny", "threads": 2,
            "llama_cpp": {"repo": "r", "bundle_tag": "t", "commit": "c" * 40, "tree": "abc"}}


class PeersStoreTest(unittest.TestCase):
    def test_partial_rerun_keeps_the_other_rows_marked_and_ordered(self):
        r = results()
        peers.store_rr_run(r, run(["kvault", "llama-server", "llama-server-slots"], "T1", 1.0), peers.RR_CONFIGS)
        only = ["llama-server-budget", "kvault-no-persist"]
        self.assertIsNone(peers.rr_merge_refusal(r, config(), only, MACHINE))
        peers.store_rr_run(r, run(only, "T2", 2.0), only)
        servers = r["roundrobin"]["runs"]["32"]["servers"]
        self.assertEqual(set(servers), set(LABELS.values()))
        self.assertEqual(servers[LABELS["kvault"]]["date"], "T1")
        self.assertEqual(servers[LABELS["kvault-no-persist"]]["date"], "T2")
        table = peers.render(r).split("### 32 agents")[1]
        rows = [line for line in table.splitlines() if line.startswith("| kvault") or line.startswith("| llama")]
        self.assertEqual([peers.rr_short(row[2:].split(" (measured")[0].split(" |")[0]) for row in rows],
                         list(peers.RR_CONFIGS))
        self.assertIn("kvault --ram-cache 64 (+ disk tier) (measured T1)", table)
        self.assertNotIn("--no-persist (measured", table)
        self.assertIn("a separate run", table)
        self.assertNotIn("not run at this agent count", table)

    def test_missing_configurations_are_listed(self):
        r = results()
        peers.store_rr_run(r, run(["kvault", "llama-server"], "T1", 1.0), ["kvault", "llama-server"])
        table = peers.render(r).split("### 32 agents")[1]
        self.assertIn("not run at this agent count: kvault-no-persist, llama-server-budget, llama-server-slots", table)
        self.assertNotIn("a separate run", table)

    def test_partial_rerun_with_other_settings_or_machine_is_refused(self):
        r = results()
        peers.store_rr_run(r, run(list(peers.RR_CONFIGS), "T1", 1.0), peers.RR_CONFIGS)
        self.assertIsNone(peers.rr_merge_refusal(r, config(), ["kvault"], MACHINE))
        other_machine = peers.rr_merge_refusal(r, config(), ["kvault"], "Other CPU")
        self.assertIn("on another machine", other_machine)
        self.assertNotIn("other settings", other_machine)
        # each setting on its own refuses the merge, and the refusal names it
        for key, value in (("reps", 2), ("model", "n.gguf"), ("threads", 4), ("llama_cpp_tree", "def"),
                           ("kvault_source", "src2/cm1"), ("kvault_source", None), ("ram_budget_mib", 128)):
            changed = {**config(), key: value}
            refusal = peers.rr_merge_refusal(r, changed, ["kvault"], MACHINE)
            self.assertIn("with other settings", refusal, key)
            self.assertIn(f"{key}:", refusal)
            self.assertNotIn("another machine", refusal)
        self.assertIsNone(peers.rr_merge_refusal(r, config(reps=2), list(peers.RR_CONFIGS), MACHINE))
        self.assertIsNone(peers.rr_merge_refusal(r, config(agents=8), ["kvault"], "Other CPU"))

    def test_full_rerun_replaces_its_table_and_keeps_other_agent_counts(self):
        r = results()
        peers.store_rr_run(r, run(list(peers.RR_CONFIGS), "T1", 1.0, agents=8), peers.RR_CONFIGS)
        peers.store_rr_run(r, run(list(peers.RR_CONFIGS), "T1", 1.0), peers.RR_CONFIGS)
        peers.store_rr_run(r, run(["kvault", "llama-server"], "T2", 3.0), ["kvault", "llama-server"])  # partial
        peers.store_rr_run(r, run(list(peers.RR_CONFIGS), "T3", 4.0), peers.RR_CONFIGS)  # full: replaces
        runs = r["roundrobin"]["runs"]
        self.assertEqual(set(runs), {"8", "32"})
        self.assertEqual({v["next_turn_p50_runs"]["median"] for v in runs["32"]["servers"].values()}, {4.0})
        self.assertNotIn("date", runs["32"]["servers"][LABELS["kvault"]])  # one run: rows carry its date
        self.assertEqual(runs["8"]["date"], "T1")

    def test_agents_of_another_size_are_their_own_table_beside_the_default_agents(self):
        r = results()
        peers.store_rr_run(r, run(list(peers.RR_CONFIGS), "T1", 1.0), peers.RR_CONFIGS)
        big = run(["kvault", "llama-server"], "T2", 2.0)
        big["config"].update({"system_words": 1000, "context_words": [2000, 4000], "ram_budget_mib": 1024})
        only = ["kvault", "llama-server"]
        # another size is another table: a partial run of it is neither refused for the default
        # agents' settings nor merged into their table
        self.assertIsNone(peers.rr_merge_refusal(r, big["config"], only, MACHINE))
        peers.store_rr_run(r, big, only)
        runs = r["roundrobin"]["runs"]
        self.assertEqual(set(runs), {"32", "32@1000+2000-4000"})
        self.assertEqual({v["next_turn_p50_runs"]["median"] for v in runs["32"]["servers"].values()}, {1.0})
        self.assertEqual(set(runs["32@1000+2000-4000"]["servers"]), {LABELS["kvault"], LABELS["llama-server"]})
        # a partial rerun of that size on another machine is refused, naming the table
        refusal = peers.rr_merge_refusal(r, big["config"], ["kvault"], "Other CPU")
        self.assertIn("32 agents of 2000–4000 words (1000-word system prompt)", refusal)
        # default agents first, then by size, each by count (a larger count of the default agents
        # still comes before the other size)
        peers.store_rr_run(r, run(list(peers.RR_CONFIGS), "T3", 1.0, agents=64), peers.RR_CONFIGS)
        text = peers.render(r)
        headings = [line for line in text.splitlines() if line.startswith("### ")]
        self.assertEqual(headings, ["### 32 agents", "### 64 agents",
                                    "### 32 agents of 2000–4000 words (1000-word system prompt)"])
        self.assertIn("A shared 1000-word system prompt, 2000–4000 words each",
                      text.split("of 2000–4000 words (1000-word system prompt)")[1])
        # a table stored under its agent count alone is keyed by its size when the results are loaded
        stored = {"32": copy.deepcopy(runs["32@1000+2000-4000"]), "8": copy.deepcopy(runs["32"])}
        stored["8"]["config"]["agents"] = 8
        r["roundrobin"]["runs"] = stored
        peers.migrate_results(r)
        self.assertEqual(set(r["roundrobin"]["runs"]), {"8", "32@1000+2000-4000"})

    def test_results_stored_before_tables_per_agent_count_become_a_dated_table(self):
        old = run(list(peers.RR_CONFIGS), None, 1.0, agents=8)
        del old["date"], old["machine"]
        old["reps"] = 3  # stored at the top level then
        migrated = peers.rr_runs(copy.deepcopy(old), {"date": "T0", "machine": "Old CPU", "reps": None})
        self.assertEqual(list(migrated), ["8"])
        self.assertEqual((migrated["8"]["date"], migrated["8"]["machine"]), ("T0", "Old CPU"))
        self.assertNotIn("reps", migrated["8"])
        r = results()
        r["roundrobin"] = old
        r["suite_runs"] = {"roundrobin": {"date": "T0", "machine": "Old CPU"}}
        self.assertIn("### 8 agents", peers.render(r))
        self.assertIn("T0, Old CPU", peers.render(r))

    def test_migration_of_stored_runs_fills_their_settings_and_blocks_merging_an_unknown_build(self):
        # shaped like bench/results/peers.json before configs named model, threads, trees: per-count
        # runs, one with a leftover "reps": None
        r = results()
        r["llama_cpp"] = {"tree": "abc"}
        r["suite_runs"] = {"roundrobin": {"date": "T0"}, "decode": {"date": "T0", "machine": MACHINE}}
        r["roundrobin"] = {"runs": {}}
        for n in (8, 32):
            stored = run(list(peers.RR_CONFIGS), "T1", 1.0, agents=n)
            for k in ("threads", "model", "llama_cpp_tree", "kvault_source"):
                del stored["config"][k]
            r["roundrobin"]["runs"][str(n)] = stored
        r["roundrobin"]["runs"]["8"]["reps"] = None
        earlier = peers.migrate_results(r)
        self.assertEqual(earlier["machine"], peers.machine_desc(r["machine"]))
        self.assertNotIn("roundrobin", r["suite_runs"])
        self.assertIn("decode", r["suite_runs"])
        for n in ("8", "32"):
            c = r["roundrobin"]["runs"][n]["config"]
            self.assertNotIn("reps", r["roundrobin"]["runs"][n])
            self.assertEqual((c["threads"], c["model"], c["llama_cpp_tree"], c["kvault_source"]),
                             (2, "m.gguf", "abc", None))
        # the build of the stored rows is unknown: a partial rerun may not claim to share it
        refusal = peers.rr_merge_refusal(r, config(), ["kvault"], MACHINE)
        self.assertIn("kvault_source: None there, src1/cm1 now", refusal)
        self.assertIsNone(peers.rr_merge_refusal(r, {**config(), "kvault_source": None}, ["kvault"], MACHINE))
        # a layout already current is left as it is
        before = copy.deepcopy(r)
        peers.migrate_results(r)
        self.assertEqual(before, r)


if __name__ == "__main__":
    unittest.main()
