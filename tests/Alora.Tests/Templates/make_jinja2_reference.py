import json, sys, datetime
sys.path.insert(0, __import__('os').path.dirname(__import__('os').path.abspath(__file__)))
from jinja2_cases import C
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.exceptions import TemplateError
import jinja2.ext
def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)
def raise_exception(m): raise TemplateError(m)
NOW = datetime.datetime(2025, 4, 9, 0, 0, 0)
def strftime_now(fmt): return NOW.strftime(fmt)
env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
env.filters['tojson'] = tojson
env.globals['raise_exception'] = raise_exception
env.globals['strftime_now'] = strftime_now
out = open(sys.argv[1], 'w', encoding='utf-8', newline='\n')
for i, (t, v) in enumerate(C):
    rec = {"id": f"j{i:03d}", "template": t, "variables": v, "now": "2025-04-09"}
    try:
        rec["rendered"] = env.from_string(t).render(**v)
    except Exception as e:
        rec["error"] = type(e).__name__ + ": " + str(e)
    out.write(json.dumps(rec, ensure_ascii=False) + "\n")
