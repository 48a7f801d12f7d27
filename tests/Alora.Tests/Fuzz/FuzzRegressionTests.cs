using Alora.Fuzz;

namespace Alora.Tests.Fuzz;

/// <summary>
/// Every input the fuzzers found that once broke a parser (crash, hang, allocation beyond the bound), minimised and
/// committed under Fuzz/Regressions/{target}/: each must now be refused cleanly, with the target's format exception.
/// </summary>
public sealed class FuzzRegressionTests
{
    private static string Folder => Path.Combine(SharedPaths.RepositoryRoot, "tests", "Alora.Tests", "Fuzz", "Regressions");

    public static TheoryData<string, string> Inputs()
    {
        var data = new TheoryData<string, string>();
        foreach (var targetFolder in Directory.GetDirectories(Folder).Order(StringComparer.Ordinal))
            foreach (var file in Directory.GetFiles(targetFolder).Order(StringComparer.Ordinal))
                data.Add(Path.GetFileName(targetFolder), Path.GetFileName(file));
        return data;
    }

    [Theory]
    [MemberData(nameof(Inputs))]
    public void FoundInputIsRefusedCleanly(string target, string file)
    {
        var fuzzTarget = FuzzTargets.Get(target);
        using var work = new TempFolder();
        var input = File.ReadAllBytes(Path.Combine(Folder, target, file));
        Assert.Null(FuzzRunner.Check(fuzzTarget, input, work.Path, TimeSpan.FromSeconds(30)));
    }
}
