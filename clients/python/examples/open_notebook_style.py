"""Open Notebook's own pattern, with keys from Keyward: only the import line changed.

Open Notebook provisions a provider's variables, then builds the model, whose SDK reads them
(Esperanto underneath reads OPENAI_API_KEY and OPENAI_BASE_URL, as the OpenAI SDK does here).

    # on the server's machine, before KEYWARD_URL is set (the CLI then uses its local data
    # directory; with KEYWARD_URL set it would be a remote client needing a token itself)
    RESOLVER=$(keyward token create --role resolver --org acme --name app)
    export KEYWARD_URL=http://127.0.0.1:8080 KEYWARD_TOKEN=$RESOLVER
    python3 examples/open_notebook_style.py

The key is never printed: only the model's answer, and the names of the variables set.
"""

import asyncio
import os

from openai import AsyncOpenAI

# was: from open_notebook.ai.key_provider import provision_provider_keys
from keyward import provision_provider_keys

# Values that are safe to show; every other variable is shown by name only.
PUBLIC = ("AZURE_OPENAI_ENDPOINT", "OPENAI_API_VERSION")


async def main() -> None:
    await provision_provider_keys("openai")
    client = AsyncOpenAI()  # OPENAI_API_KEY and OPENAI_BASE_URL, as provisioned
    completion = await client.chat.completions.create(
        model=os.environ.get("MODEL", "gpt-4o-mini"),
        messages=[{"role": "user", "content": "Say hello in five words."}],
    )
    print(completion.choices[0].message.content)

    for provider in ("azure", "vertex"):
        before = dict(os.environ)
        if not await provision_provider_keys(provider):
            print(f"{provider}: no key in Keyward; environment unchanged")
            continue
        changed = sorted(n for n, v in os.environ.items() if before.get(n) != v)
        print(f"{provider}: set {', '.join(changed)}")
        for name in PUBLIC:
            if name in changed:
                print(f"  {name}={os.environ[name]}")


if __name__ == "__main__":
    asyncio.run(main())
