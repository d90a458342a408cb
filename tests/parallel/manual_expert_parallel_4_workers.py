"""Expert parallelism on 4 workers against the single process: data_parallel 4 x expert_parallel 2 (the expert
gradients summed over replicas) and data_parallel 2 x model_parallel 2 x expert_parallel 2 (each expert's FFN split
too). Not in the suite (two 4-worker launches cost minutes on 2 cores); run it by hand:

    python -m pytest -s tests/parallel/manual_expert_parallel_4_workers.py

It prints each step's single-process and parallel loss, their difference, the gradient norms and whether the
per-layer expert loads are equal."""
import pytest

from tests.e2e.helpers import read_metrics, run_main
from tests.parallel.msrun import finish, launch, logs, train_command
from tests.parallel.test_msrun_expert_parallel import assert_same_curve, user_config

RUNS = {"dp4_ep2": {"data_parallel": 4, "expert_parallel": 2},
        "dp2_mp2_ep2": {"data_parallel": 2, "model_parallel": 2, "expert_parallel": 2}}


@pytest.mark.parametrize("name", list(RUNS))
def test_four_workers(name, tmp_path, sp_model_file, wiki_mindrecord):
    config = user_config(tmp_path / "p.yaml", sp_model_file, wiki_mindrecord, parallel_config=RUNS[name])
    process = launch(train_command(config, str(tmp_path / "p")), 4, log_dir=str(tmp_path / "log"))
    single = user_config(tmp_path / "s.yaml", sp_model_file, wiki_mindrecord)
    assert run_main(["--config", single, "--run_mode", "train", "--output_dir", tmp_path / "s"])[0] == 0
    code, out, err = finish(process, timeout=1500)
    assert code == 0, out[-2000:] + err[-2000:] + logs(tmp_path / "log")
    reference, parallel = read_metrics(str(tmp_path / "s")), read_metrics(str(tmp_path / "p"))
    for ref, got in zip(reference, parallel):
        print(f"{name} step {ref['step']}: loss {ref['loss']:.7f} / {got['loss']:.7f} (difference "
              f"{abs(ref['loss'] - got['loss']):.1e}), grad_norm {ref['grad_norm']:.7f} / {got['grad_norm']:.7f}, "
              f"same expert load {ref['expert_load'] == got['expert_load']}")
    assert len(reference) == len(parallel)
    assert_same_curve(reference, parallel)
