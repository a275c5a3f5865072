"""The official OpenAI SDK through Keyward's gateway: the program holds a gateway token, never
the provider's key; the gateway puts the organization's key in its place.

    # on the server's machine, before KEYWARD_URL is set (the CLI then uses its local data
    # directory; with KEYWARD_URL set it would be a remote client needing a token itself)
    GATEWAY=$(keyward gateway-token create --org acme --name chat-ui)
    export KEYWARD_URL=http://127.0.0.1:8080 KEYWARD_GATEWAY_TOKEN=$GATEWAY
    python3 examples/gateway_openai.py

No `keyward` import is needed: the gateway speaks OpenAI's API at /gateway/openai/v1.
"""

import os

from openai import OpenAI

client = OpenAI(
    base_url=os.environ["KEYWARD_URL"].rstrip("/") + "/gateway/openai/v1",
    api_key=os.environ["KEYWARD_GATEWAY_TOKEN"],  # kwg_...
)
completion = client.chat.completions.create(
    model=os.environ.get("MODEL", "gpt-4o-mini"),
    messages=[{"role": "user", "content": "Say hello in five words."}],
)
print(completion.choices[0].message.content)
