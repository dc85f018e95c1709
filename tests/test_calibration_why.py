"""The report's "Why": each miss named by its shape, from the report's own measurements
(``mailgate.calibration.why``), on a hand-made report with one miss of each shape."""

from __future__ import annotations

from typing import Any

from mailgate.calibration.why import closing_notes


def row(
    rate: float,
    span: str,
    flow: str,
    q: str,
    meas: float,
    model: float,
    n: int = 900,
    ok: bool | None = True,
    spread: tuple[float, float] = (0.0, 0.0),
) -> dict[str, Any]:
    return {
        "rate": rate, "span": span, "flow": flow, "quantile": q, "n": n,
        "measured_s": meas, "modelled_s": model, "relative_error": model / meas - 1,
        "ok": ok, "spread": {"n": 3, "min": spread[0], "max": spread[1]},
    }  # fmt: skip


def level(rate: float, hosts_measured: float, hosts_model: float) -> dict[str, Any]:
    return {
        "measured": {"rate": rate, "utilisation": {"gateway0.0": hosts_measured, "dns": 0.5}},
        "modelled": {"rate": rate, "utilisation": {"gateway0.0": hosts_model}},
    }


def report(**sat: Any) -> dict[str, Any]:
    steps = {
        "measured": {"steps": [{"rate": 100.0, "throughput": 99.0, "lagging": False},
                               {"rate": 150.0, "throughput": 120.0, "lagging": True,
                                "p95_in_mailbox_s": 1.2}]},
        "modelled": {"steps": [{"rate": 100.0, "throughput": 90.0, "lagging": True,
                                "p95_in_mailbox_s": 2.0}]},
    }  # fmt: skip
    return {
        "loads": [level(10.0, 0.10, 0.05), level(70.0, 1.00, 0.95)],
        "background": {"hosts_constant_cores": 0.05},
        "latency": [
            row(10.0, "in_mailbox", "inbound", "p50", 0.020, 0.020),
            # waiting for a core: the model faster, its CPU (0.95 + 0.05 constant) agrees
            row(70.0, "in_mailbox", "inbound", "p50", 0.060, 0.035, ok=False),
            # big messages: p95 off, the out-of-shadow p95 agrees
            row(70.0, "in_mailbox", "inbound", "p95", 0.200, 0.120, ok=False),
            row(70.0, "out_of_shadow", "inbound", "p95", 0.050, 0.048, ok=None),
            # few samples: 30 messages whose repeats differ by 40 %
            row(
                70.0,
                "in_mailbox",
                "internal",
                "p50",
                0.050,
                0.065,
                n=30,
                ok=False,
                spread=(0.045, 0.063),
            ),
        ],
        "departures": {},
        "saturation": {"relative_error": -0.2, "same_first_host": True, **steps, **sat},
    }


def test_each_miss_gets_its_physical_effect() -> None:
    notes = closing_notes(report())
    assert len(notes) == 4
    core, big, few, sat = notes
    assert core.startswith("70 msg/s, inbound p50") and "agrees (model 1.00, /proc 1.00" in core
    assert "grew 40.0 ms since the lowest load, the model's 15.0 ms" in core
    assert "wake up" in core and "per-CPU run queues" in core
    assert big.startswith("70 msg/s, inbound p95") and "measured 50.0 ms, modelled 48.0" in big
    assert "GIL" in big
    assert few.startswith("70 msg/s, internal p50") and "30 messages only" in few
    assert "45.0–63.0 ms" in few
    assert "measured ramp first failed at 150.0 msg/s offered (80% completed" in sat
    assert "modelled ramp first failed at 100.0 msg/s offered (90% completed" in sat


def test_the_measured_run_queue_wait_is_quoted() -> None:
    r = report()
    r["loads"][0]["measured"]["run_queue_per_message_s"] = 0.004
    r["loads"][1]["measured"]["run_queue_per_message_s"] = 0.019
    core = closing_notes(r)[0]
    assert "waited for a core 19.0 ms per message here against 4.0 ms at the lowest" in core


def test_a_model_whose_cpu_is_off_is_not_blamed_on_waiting() -> None:
    r = report()
    r["loads"][1]["modelled"]["utilisation"]["gateway0.0"] = 0.60  # 35 % short of /proc
    core = closing_notes(r)[0]
    assert "run queues" not in core and "(model 0.65, /proc 1.00 cores)" in core


def test_run_queue_time_is_counted_from_schedstat() -> None:
    """Two busy threads pinned to one core: each waits for the other, and schedstat's
    run-queue time (what the sampler reads) grows by about the time the other ran."""
    import os
    import subprocess
    import sys
    import time

    from mailgate.calibration.cpu import CpuSampler

    spin = "import time\nt = time.process_time()\nwhile time.process_time() - t < 1.0: pass\n"
    procs = [subprocess.Popen(["taskset", "-c", "0", sys.executable, "-c", spin]) for _ in range(2)]
    try:
        sampler = CpuSampler({f"p{i}": p.pid for i, p in enumerate(procs)})
        sampler.start()
        time.sleep(1.0)
        queued = sampler.run_queue_seconds()
        used = sampler.cpu_seconds()
    finally:
        for p in procs:
            p.wait(timeout=30)
    # in 1 s of wall time on one core, what one process did not run it waited
    assert sum(used.values()) < 1.2
    assert 0.5 < sum(queued.values()) < 2.0  # more if other work shares core 0
    assert os.path.exists(f"/proc/{os.getpid()}/schedstat")


def test_a_ramp_that_never_failed_says_how_far_it_went() -> None:
    r = report()
    r["saturation"]["measured"]["steps"] = [{"rate": 100.0, "throughput": 99.0}]
    sat = closing_notes(r)[-1]
    assert "measured ramp kept up with every step, up to 100.0 msg/s" in sat


def test_a_burner_that_was_asked_for_is_not_called_interference() -> None:
    r = report()
    r["loads"][0]["measured"]["foreign_busy_cores"] = 1.0
    assert closing_notes(r)[0].startswith("the fit (10 msg/s) ran while other processes")
    r["background"]["burner"] = {"cores_measured": 0.9}
    assert not closing_notes(r)[0].startswith("the fit")
