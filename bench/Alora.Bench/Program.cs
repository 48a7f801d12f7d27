using Alora.Bench;

// Scenario runner: dotnet run -c Release --project bench/Alora.Bench -- <scenario> [options]
string scenario = args.Length > 0 ? args[0] : "help";
// --layer NAME keeps only that projection (q/o, k/v, gate/up, down, lm_head) in the gemm and gemv scenarios.
int layerFlag = Array.IndexOf(args, "--layer");
string? onlyLayer = layerFlag >= 0 && layerFlag + 1 < args.Length ? args[layerFlag + 1] : null;
if (scenario == "help")
    Console.WriteLine("kernel scenarios: gemm|gemv [--no-lm-head] [--layer NAME] | backward | elementwise | pool | bandwidth | gemv-stream");
switch (scenario)
{
    case "gemm":
        // --packed: the packed micro-kernel for M > 4 instead of the batch-invariant row groups (the default).
        Alora.Kernels.Gemm.BatchInvariant = !args.Contains("--packed");
        Console.WriteLine(Alora.Kernels.Gemm.BatchInvariant ? "GEMM path for M > 4: batch-invariant row groups (default)" : "GEMM path for M > 4: packed micro-kernel (--packed)");
        GemmBench.Run([512], includeLmHead: !args.Contains("--no-lm-head"), onlyLayer);
        break;
    case "gemv":
        GemmBench.Run([1, 2, 3, 4], includeLmHead: !args.Contains("--no-lm-head"), onlyLayer);
        break;
    case "backward":
        BackwardBench.Run();
        break;
    case "elementwise":
        ElementwiseBench.Run();
        break;
    case "pool":
        PoolBench.Run();
        break;
    case "bandwidth":
        Console.WriteLine($"memory read bandwidth: {MemoryBandwidth.MeasureReadGBps():F1} GB/s (1 GiB, {Alora.Kernels.WorkerPool.Shared.ThreadCount} threads, best of 5)");
        break;
    case "gemv-stream": GemvStream.Run(); break;
    case "decode": ModelBench.Decode(); break;
    case "structured": StructuredBench.Run(args.Length > 1 ? args[1].Split(',') : ["granite3", "llama3"], args.Length > 2 ? int.Parse(args[2], System.Globalization.CultureInfo.InvariantCulture) : 96); break;
    case "engine-concurrency": EngineBench.Concurrency([1, 4, 16, 64]); break;
    case "serve-load":
        int longPrefillAt = Array.IndexOf(args, "--long-prefill"), shortPrefillAt = Array.IndexOf(args, "--short-prefill");
        await ServerLoadBench.Run([1, 8, 32], peer: args.Contains("--peer"),
            longPrefillThreshold: longPrefillAt >= 0 ? int.Parse(args[longPrefillAt + 1], System.Globalization.CultureInfo.InvariantCulture) : 0,
            shortPrefillTokens: shortPrefillAt >= 0 ? int.Parse(args[shortPrefillAt + 1], System.Globalization.CultureInfo.InvariantCulture) : 0);
        break;
    case "engine-agentic":
        int turnsAt = Array.IndexOf(args, "--turns"), turnTokensAt = Array.IndexOf(args, "--turn-tokens");
        await EngineBench.Agentic(turns: turnsAt >= 0 ? int.Parse(args[turnsAt + 1], System.Globalization.CultureInfo.InvariantCulture) : 4,
            turnTokens: turnTokensAt >= 0 ? int.Parse(args[turnTokensAt + 1], System.Globalization.CultureInfo.InvariantCulture) : 500);
        break;
    case "decode-batch":
        // decode-batch [--no-gemm]: N = 1, 4, 16, 64 streams of one token per step, then the M = 1..64 GEMM table.
        // Aids: --gemm-only (the table), --gemm-step (one step's GEMMs per M), --gemm-breakdown (per projection),
        // --tune (one thread, row groups vs the batched path, M = 5..128).
        if (args.Contains("--tune")) DecodeBatchBench.Tune([5, 8, 16, 64, 96, 128]);
        else if (args.Contains("--gemm-breakdown")) DecodeBatchBench.GemmBreakdown([1, 4, 8, 16, 32, 64]);
        else if (args.Contains("--gemm-step")) DecodeBatchBench.GemmStep([1, 4, 5, 8, 16, 32, 64]);
        else if (args.Contains("--gemm-only")) DecodeBatchBench.GemmTable([1, 4, 8, 16, 32, 64]);
        else DecodeBatchBench.Run([1, 4, 16, 64], gemmTable: !args.Contains("--no-gemm"));
        break;
    case "tokenizers": return TokenizerBench.Run(args[1..]);
    case "prefill": ModelBench.Prefill(); break;
    case "alora-ttft":
    {
        int svgAt = Array.IndexOf(args, "--svg");
        await AloraTtftBench.Run(args.Length > 1 && !args[1].StartsWith("--", StringComparison.Ordinal) ? args[1] : "../shared", [256, 1024, 4096], svgAt >= 0 ? args[svgAt + 1] : null);
        break;
    }
    case "adapters": AdapterBench.Run(args.Length > 1 ? int.Parse(args[1], System.Globalization.CultureInfo.InvariantCulture) : 2); break;
    case "train-step":
    {
        int rowsAt = Array.IndexOf(args, "--rows"), lengthAt = Array.IndexOf(args, "--length");
        TrainingBench.Run(rowsAt >= 0 ? int.Parse(args[rowsAt + 1], System.Globalization.CultureInfo.InvariantCulture) : 2,
            lengthAt >= 0 ? int.Parse(args[lengthAt + 1], System.Globalization.CultureInfo.InvariantCulture) : 128);
        break;
    }
    case "train-speed": return TrainSpeedBench.Run(TrainSpeedBench.ParseOptions(args[1..]));
    case "intrinsic":
        // intrinsic [SHARED_DIR] [WORK_DIR] [STORIES] [STEPS]: the training issue's aLoRA-vs-LoRA efficacy experiment
        await IntrinsicExperiment.Run(args.Length > 1 ? args[1] : "../shared", args.Length > 2 ? args[2] : Path.Combine(Path.GetTempPath(), "alora-intrinsic"),
            args.Length > 3 ? int.Parse(args[3], System.Globalization.CultureInfo.InvariantCulture) : 600,
            args.Length > 4 ? int.Parse(args[4], System.Globalization.CultureInfo.InvariantCulture) : 120);
        break;
    case "mutated-init": MutatedInitBench.Run(args.Length > 1 ? args[1] : "../shared", args.Length > 2 ? int.Parse(args[2], System.Globalization.CultureInfo.InvariantCulture) : 8); break;
    case "decode-concurrency-peer": return ConcurrencyPeerBench.Run(ConcurrencyPeerBench.ParseOptions(args[1..]));
    case "template": TemplateBench.Run(args.Length > 1 ? args[1] : "../shared"); break;
    case "llama2c":
        int at = Array.IndexOf(args, "--run");
        if (at < 0 || at + 1 >= args.Length) { Console.Error.WriteLine("llama2c needs --run PATH (a locally built llama2.c `run` binary)"); return 1; }
        int threadsAt = Array.IndexOf(args, "--threads");
        ModelBench.Llama2C(args[at + 1], threadsAt >= 0 ? int.Parse(args[threadsAt + 1], System.Globalization.CultureInfo.InvariantCulture) : Environment.ProcessorCount);
        break;
    default:
        Console.WriteLine("scenarios: gemm [--no-lm-head] [--packed] | gemv [--no-lm-head] | pool | bandwidth | gemv-stream | decode | decode-batch [--gemm-only] [--no-gemm] | prefill | engine-concurrency | engine-agentic [--turns N] [--turn-tokens T] | serve-load [--peer] [--long-prefill N] [--short-prefill N] | llama2c --run PATH [--threads N] | alora-ttft [SHARED_DIR] [--svg FILE] | adapters [LAYERS] | intrinsic [SHARED_DIR] [WORK_DIR] [STORIES] [STEPS] | template SHARED_DIR | train-step [--rows B] [--length T] | train-speed [--rows 1,2] [--length T] [--rounds N] [--dtype bf16|f32] [--python PATH] | tokenizers [--passes N] [--corpus FILE] [--no-peer] | decode-concurrency-peer [--streams 1,4,16,64] [--steps S] [--prompt-length P] [--rounds R] [--dtype bf16|f16|f32] [--check-only]   (see bench/README.md)");
        return scenario == "help" ? 0 : 1;
}
return 0;
