"""Run by tests/e2e/test_kserve_client.py in a virtual environment holding KServe's SDK (which
pins pandas and protobuf below the project's): KServe's InferenceRESTClient, V1 and V2, against
a running server. Prints one JSON object with what each call returned.

usage: python kserve_client.py BASE_URL MODEL INPUT_ROWS_JSON
"""

import asyncio
import json
import sys

import httpx
import numpy as np
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig


async def main(url: str, model: str, rows: list[list[float]], names: list[str]) -> dict:
    found = {}
    v1 = InferenceRESTClient(RESTConfig(protocol="v1", retries=0))
    found["v1_live"] = await v1.is_server_live(url)
    found["v1_ready"] = await v1.is_model_ready(url, model)
    try:
        await v1.is_model_ready(url, "no_such_model")
        found["v1_missing"] = "answered"
    except httpx.HTTPStatusError as err:
        found["v1_missing"] = err.response.status_code
    instances = [dict(zip(names, row, strict=True)) for row in rows]
    found["v1_predict"] = await v1.infer(url, {"instances": instances}, model_name=model)
    await v1.close()

    v2 = InferenceRESTClient(RESTConfig(protocol="v2", retries=0))
    found["v2_live"] = await v2.is_server_live(url)
    found["v2_ready"] = await v2.is_model_ready(url, model)
    x = np.asarray(rows, dtype=np.float32)
    for binary in (False, True):
        tensor = InferInput("inputs", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x, binary_data=binary)
        reply = await v2.infer(url, InferRequest(model, [tensor]), model_name=model)
        found[f"v2_infer_{'binary' if binary else 'json'}"] = {
            out.name: out.as_numpy().tolist() for out in reply.outputs}
    await v2.close()
    return found


if __name__ == "__main__":
    base, name, table, columns = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
    print(json.dumps(asyncio.run(main(base, name, table, columns.split(",")))))
