from collections import Counter

from tests.integration.test_web_request_cost import COUNTER, web  # noqa: F401


def test_join_cost(web):  # noqa: F811
    session = web.session()
    web.join(session, "warm")
    COUNTER.take()
    web.join(session, "alice")
    print("JOIN COST", Counter(COUNTER.take()))
