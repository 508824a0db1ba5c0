"""Before the first build the API says so, and the dashboard waits for it."""

import requests

from tests.serve.conftest import serving


def test_no_build_yet_is_a_clear_503(aws_env):
    with serving() as url:
        for path in ("/v1/quotes/latest", "/v1/bars/AAPL", "/v1/symbols", "/v1/health"):
            response = requests.get(f"{url}{path}", timeout=10)
            assert response.status_code == 503, path
            assert "no warehouse there yet" in response.json()["detail"], path
        assert requests.get(url, timeout=10).status_code == 200  # the page itself is there
