#!/usr/bin/env bash
# A coverage-guided fuzzing campaign for one parser (docs/fuzzing.md): SharpFuzz instruments Alora.dll, afl-fuzz
# (Debian's afl++) mutates the target's seeds from ../shared, and every crash or hang it saves is run again through
# the harness rule (alora-fuzz TARGET --check) so a report only lists real failures.
#
#   tools/fuzz.sh TARGET [SECONDS]     e.g. tools/fuzz.sh gguf 600
#   tools/fuzz.sh --list
#
# Work goes to .fuzz/ (ignored): .fuzz/build (instrumented), .fuzz/plain, .fuzz/TARGET/{seeds,findings,afl.log}.
# Prints afl-fuzz's figures at the end: inputs executed, corpus (distinct paths), map coverage, crashes, hangs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

build=.fuzz/build   # Alora.dll instrumented for afl-fuzz
plain=.fuzz/plain   # the same build uninstrumented: instrumented code only runs under afl-fuzz
if [ "${1:-}" = "--list" ] || [ $# -lt 1 ]; then
  dotnet build tests/Alora.Fuzz -c Release -nologo -v quiet -o "$plain" >/dev/null
  dotnet "$plain/Alora.Fuzz.dll" 2>&1 | sed 's/^usage: alora-fuzz/usage: tools\/fuzz.sh/'
  exit 2
fi
target=$1; seconds=${2:-600}

if ! command -v afl-fuzz >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends afl++ >/dev/null
fi
tool=.fuzz/tool
[ -x "$tool/sharpfuzz" ] || dotnet tool install SharpFuzz.CommandLine --version 2.3.0 --tool-path "$tool" >/dev/null

# Build once, then instrument Alora.dll in place (SharpFuzz adds AFL's edge counters); a rebuild starts again.
stamp="$build/.instrumented"
if [ ! -f "$stamp" ] || [ -n "$(find src/Alora tests/Alora.Fuzz -name '*.cs' -newer "$stamp" -print -quit)" ]; then
  rm -rf "$build" "$plain"
  dotnet build tests/Alora.Fuzz -c Release -nologo -v quiet -o "$plain" >/dev/null
  cp -r "$plain" "$build"
  "$tool/sharpfuzz" "$build/Alora.dll" >/dev/null
  touch "$stamp"
fi

work=.fuzz/$target
rm -rf "$work/seeds"
dotnet "$plain/Alora.Fuzz.dll" "$target" --seeds "$work/seeds" >/dev/null
resume=-i; input="$work/seeds"
if [ -d "$work/findings/default/queue" ]; then input=-; fi   # resume a campaign that ran before

# A .NET process is no AFL-compiled binary (skip that check); its memory is the runtime's (no -m limit);
# 10 s per input, as the CI harness allows.
AFL_SKIP_BIN_CHECK=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_UI=1 AFL_NO_AFFINITY=1 \
AFL_AUTORESUME=1 AFL_FORKSRV_INIT_TMOUT=60000 \
  timeout $((seconds + 120)) afl-fuzz -V "$seconds" $resume "$input" -o "$work/findings" -t 10000 -m none -- \
  dotnet "$build/Alora.Fuzz.dll" "$target" > "$work/afl.log" 2>&1 || {
    # SharpFuzz runs every input in the one .NET process (no fork), so an input that hangs past -t (afl kills the
    # process) or kills it outright ends the campaign ("Unable to communicate with fork server"). The input is
    # afl's .cur_input: check it, and keep it for a regression test.
    echo "afl-fuzz stopped; see $work/afl.log"; grep -a "PROGRAM ABORT" -A1 "$work/afl.log" | head -2
    cur="$work/findings/default/.cur_input"
    if [ -f "$cur" ]; then cp "$cur" "$work/last-input"; dotnet "$plain/Alora.Fuzz.dll" "$target" --check "$work/last-input"; fi
    exit 1
  }

stats="$work/findings/default/fuzzer_stats"
field() { sed -n "s/^$1 *: *//p" "$stats"; }
echo "$target: $(field execs_done) inputs executed in $(field run_time) s, $(field corpus_count) paths in the corpus," \
     "map coverage $(field bitmap_cvg), $(field saved_crashes) crashes, $(field saved_hangs) hangs saved"

# Re-run what afl-fuzz saved through the harness rule (a saved hang may only have been slow under afl).
status=0
for f in "$work"/findings/default/crashes/id:* "$work"/findings/default/hangs/id:*; do
  [ -e "$f" ] || continue
  dotnet "$plain/Alora.Fuzz.dll" "$target" --check "$f" || status=1
done
exit $status
