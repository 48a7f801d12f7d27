// Scenario runner: `dotnet run -c Release --project bench/Alora.Bench -- <scenario> [options]`.
return args.FirstOrDefault() switch
{
    "tokenizers" => Alora.Bench.TokenizerBench.Run(args[1..]),
    _ => Usage(),
};

static int Usage()
{
    Console.Error.WriteLine("usage: Alora.Bench <scenario> [options]; scenarios: tokenizers");
    return 2;
}
