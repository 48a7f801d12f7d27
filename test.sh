#!/usr/bin/env bash
# The project's test command (README, .ci/run): builds everything warning-free, runs the whole test suite,
# then runs the kernel suite again with 256-bit vectors only, without AVX-512 (AVX2) and with hardware intrinsics off,
# then the llama.cpp agreement tests (tests/Alora.LlamaCppTests, a project of its own: LLamaSharp's native backend).
# Installs Debian's chromium first if it is missing (the chat page's browser test).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

tools/install-test-deps.sh
dotnet build Alora.slnx -c Release -nologo -v quiet
# llama.cpp as a second reference (LLamaSharp's native CPU backend): a test-only project kept out of Alora.slnx.
dotnet build tests/Alora.LlamaCppTests -c Release -nologo -v quiet

passed=0; failed=0; status=0
run() {
  local label="$1"; shift
  echo "== $label"
  local log; log=$(mktemp)
  if ! "$@" 2>&1 | tee "$log"; then status=1; fi
  # dotnet test's summary: "Failed!  - Failed:     1, Passed:   120, Skipped: ..." or "Passed!  - Failed: 0, ..."
  local line; line=$(grep -E '(Passed|Failed)! +- Failed: +[0-9]+, Passed: +[0-9]+' "$log" | tail -1 || true)
  if [ -z "$line" ]; then echo "no test summary for: $label"; status=1; else
    passed=$((passed + $(sed -E 's/.*Passed: +([0-9]+).*/\1/' <<<"$line")))
    failed=$((failed + $(sed -E 's/.*Failed: +([0-9]+), Passed.*/\1/' <<<"$line")))
  fi
  rm -f "$log"
}

test_args=(tests/Alora.Tests -c Release --no-build -nologo)
kernels="FullyQualifiedName~Alora.Tests.Kernels"
run "all tests" dotnet test "${test_args[@]}"
DOTNET_PreferredVectorBitWidth=256 run "kernels, 256-bit vectors" dotnet test "${test_args[@]}" --filter "$kernels"
# No AVX-512 at all (an AVX2 machine): 16 vector registers, so the 256-bit GEMM takes its 2-row tiles.
DOTNET_EnableAVX512=0 run "kernels, AVX2 only" dotnet test "${test_args[@]}" --filter "$kernels"
DOTNET_EnableHWIntrinsic=0 run "kernels, scalar (no hardware intrinsics)" dotnet test "${test_args[@]}" --filter "$kernels"
run "llama.cpp agreement" dotnet test tests/Alora.LlamaCppTests -c Release --no-build -nologo

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$status" -eq 0 ]
