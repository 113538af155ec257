"""/healthz and /metrics."""

from __future__ import annotations

import re


def test_healthz_is_200_without_a_key(client):
    """Health answers without a key while Redis answers, with the monitor's detail (none
    runs here: that does not make the service unhealthy)."""
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {
        "status": "ok",
        "monitor": {"status": "none", "instances": [], "last_success": None, "rollouts": []},
    }


def test_metrics_count_requests_latency_and_assignments(api, client):
    """After some assigns, /metrics shows requests, the latency histogram and per-variant counts."""
    api.create_experiment()
    variants = [api.assign("exp", f"u{i}")["variant"] for i in range(10)]
    api.assign("exp", "u0")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    text = response.get_data(as_text=True)
    assert (
        'abtest_http_requests_total{endpoint="/v1/assign",method="POST",status="200"} 11.0' in text
    )
    assert 'abtest_http_request_duration_seconds_count{endpoint="/v1/assign"} 11.0' in text
    assert re.search(
        r'abtest_http_request_duration_seconds_bucket\{endpoint="/v1/assign",le="\+Inf"\} 11.0',
        text,
    )
    control = variants.count("control")
    assert f'abtest_exposures_total{{experiment="exp",variant="control"}} {control}' in text
    assert f'abtest_exposures_total{{experiment="exp",variant="treatment"}} {10 - control}' in text
    assigned = re.findall(
        r'abtest_assignments_total\{experiment="exp",reason="assigned",variant="\w+"\} (\S+)', text
    )
    assert sum(float(x) for x in assigned) == 11
