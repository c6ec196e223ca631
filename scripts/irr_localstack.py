"""Starts LocalStack with its JSONata evaluator served by jsonata-python.

LocalStack's Step Functions interpreter evaluates `QueryLanguage: JSONata` expressions with
dashjoin's jsonata-java in a JVM (Java 21 and the jars, downloaded on first use from
adoptium.net and Maven Central). A machine without those downloads (CI, a drill laptop
offline) fails every JSONata state with `States.Runtime`. jsonata-python is the same
authors' port of jsonata-java to Python (pinned in scripts/localstack-requirements.txt):
this module points LocalStack's one evaluation hook at it and then runs LocalStack's own
entry point, so the interpreter (its states, `$states` bindings, errors) is LocalStack's.

scripts/ensure-localstack installs this file into LocalStack's venv; scripts/start-localstack
and `irr gameday --emulator localstack` run `python -m irr_localstack`.
"""

import json
import runpy

import jsonata
from localstack.services.stepfunctions.asl.jsonata import jsonata as ls_jsonata


def _plain(value):
    # As the JVM bridge does: the value through JSON, so only JSON types leave here.
    return json.loads(json.dumps(value, default=str))


def _eval(expression):
    try:
        return _plain(jsonata.Jsonata(expression).evaluate(None))
    except Exception as ex:  # the JVM bridge reports every failure this way too
        raise ls_jsonata.JSONataException("UNKNOWN", str(ex))


ls_jsonata._eval_jsonata = _eval

if __name__ == "__main__":
    runpy.run_module("localstack.runtime.main", run_name="__main__", alter_sys=True)
