"""The seeds' test client (seed §3.5): three asynchronous requests, each checked."""

import sys

from models import EXPECTED, SAMPLE_WORDS
from pipeserve import PipelineClient

client = PipelineClient()
client.connect([sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:18071"])

futures = []
for i in range(3):
    futures.append(client.predict(feed_dict={"words": SAMPLE_WORDS}, fetch=["prediction"], asyn=True))

for f in futures:
    res = f.result()
    if res["err_no"] != 0:
        print(res)
        sys.exit(1)
    print("prediction:", res["prediction"], "expected:", EXPECTED["prediction"])
