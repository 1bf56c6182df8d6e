"""Scraping ``/metrics`` over HTTP as Prometheus does, and reading one sample of it."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(port: int) -> Samples:
    """Every sample ``/metrics`` on 127.0.0.1:``port`` shows now, by name and labels."""
    async with httpx.AsyncClient() as client:
        response = await client.get(f"http://127.0.0.1:{port}/metrics", timeout=60)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample ``name{labels}`` (a KeyError naming it when it is missing)."""
    return samples[(name, frozenset(labels.items()))]


def counted(samples: Samples, name: str, **labels: str) -> float:
    """The counter ``name{labels}``, 0 while it has counted nothing: a labelled counter shows
    on ``/metrics`` only from its first count, as in Prometheus."""
    return samples.get((name, frozenset(labels.items())), 0.0)
