using Alora.Bench;

// Scenario runner: dotnet run -c Release --project bench/Alora.Bench -- <scenario> [options]
string scenario = args.Length > 0 ? args[0] : "help";
switch (scenario)
{
    case "gemm":
        GemmBench.Run([512], includeLmHead: !args.Contains("--no-lm-head"));
        break;
    case "gemv":
        GemmBench.Run([1, 4], includeLmHead: !args.Contains("--no-lm-head"));
        break;
    case "backward":
        BackwardBench.Run();
        break;
    case "pool":
        PoolBench.Run();
        break;
    case "bandwidth":
        Console.WriteLine($"memory read bandwidth: {MemoryBandwidth.MeasureReadGBps():F1} GB/s (1 GiB, {Alora.Kernels.WorkerPool.Shared.ThreadCount} threads, best of 5)");
        break;
    default:
        Console.WriteLine("scenarios: gemm [--no-lm-head] | gemv [--no-lm-head] | backward | pool | bandwidth   (see bench/README.md)");
        return scenario == "help" ? 0 : 1;
}
return 0;
