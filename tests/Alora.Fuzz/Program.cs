using Alora.Fuzz;

// alora-fuzz TARGET            run under afl-fuzz (SharpFuzz's fork server; tools/fuzz.sh instruments Alora.dll first)
// alora-fuzz TARGET --seeds DIR  write the target's seed inputs into DIR (afl-fuzz -i)
// alora-fuzz TARGET --check FILE...  run inputs once each through the harness rule (time, allocation, exception type)
if (args.Length == 0)
{
    Console.Error.WriteLine($"usage: alora-fuzz TARGET [--seeds DIR | --check FILE...]; targets: {string.Join(", ", FuzzTargets.All.Select(t => t.Name))}");
    return 2;
}
var target = FuzzTargets.Get(args[0]);
string work = Path.Combine(Path.GetTempPath(), $"alora-fuzz-{target.Name}-{Environment.ProcessId}");
Directory.CreateDirectory(work);
if (args.Length >= 3 && args[1] == "--seeds")
{
    Directory.CreateDirectory(args[2]);
    var seeds = target.Seeds();
    for (int i = 0; i < seeds.Count; i++) File.WriteAllBytes(Path.Combine(args[2], $"seed-{i}"), seeds[i]);
    Console.WriteLine($"{seeds.Count} seeds for {target.Name} in {args[2]}");
    return 0;
}
if (args.Length >= 3 && args[1] == "--check")
{
    int failures = 0;
    foreach (string file in args.Skip(2))
    {
        var failure = FuzzRunner.Check(target, File.ReadAllBytes(file), work, TimeSpan.FromSeconds(10));
        Console.WriteLine($"{file}: {(failure is null ? "ok" : failure.ToString())}");
        if (failure is not null) failures++;
    }
    return failures == 0 ? 0 : 1;
}

// Under afl-fuzz: an exception the target does not allow escapes and AFL records a crash; a clean refusal is a
// normal run. Nothing instrumented may run before Fuzzer.Run attaches AFL's shared memory, so the lazily loaded
// fixtures (base config, tokenizer) warm up on the first input.
SharpFuzz.Fuzzer.Run(stream =>
{
    using var buffer = new MemoryStream();
    stream.CopyTo(buffer);
    try { target.Run(buffer.ToArray(), work); }
    catch (Exception e) when (target.IsAllowed(e)) { }
});
return 0;
