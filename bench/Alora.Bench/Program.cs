using Alora.Bench;

// Scenario runner: dotnet run -c Release --project bench/Alora.Bench -- <scenario> [options]
string scenario = args.Length > 0 ? args[0] : "help";
// --layer NAME keeps only that projection (q/o, k/v, gate/up, down, lm_head) in the gemm and gemv scenarios.
int layerFlag = Array.IndexOf(args, "--layer");
string? onlyLayer = layerFlag >= 0 && layerFlag + 1 < args.Length ? args[layerFlag + 1] : null;
if (scenario == "help")
    Console.WriteLine("kernel scenarios: gemm|gemv [--no-lm-head] [--layer NAME] | backward | elementwise | pool | bandwidth");
switch (scenario)
{
    case "gemm":
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
    default:
        Console.WriteLine("scenarios: gemm [--no-lm-head] | gemv [--no-lm-head] | pool | bandwidth   (see bench/README.md)");
        return scenario == "help" ? 0 : 1;
}
return 0;
