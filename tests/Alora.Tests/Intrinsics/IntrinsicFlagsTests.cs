using System.Reflection;
using Alora.Intrinsics;

namespace Alora.Tests.Intrinsics;

/// <summary>`alora serve`'s intrinsic flags: --intrinsic NAME=FOLDER needs the folder's io.yaml; an io.yaml beside an --adapter is read.</summary>
public sealed class IntrinsicFlagsTests
{
    private static Dictionary<string, IntrinsicDefinition> LoadInto(LanguageModel model, string[] specs, IEnumerable<string> adapterNames)
    {
        var method = Type.GetType("Alora.Cli.IntrinsicFlags, Alora.Cli", throwOnError: true)!.GetMethod("LoadInto", BindingFlags.Public | BindingFlags.Static)!;
        try { return (Dictionary<string, IntrinsicDefinition>)method.Invoke(null, [model, specs, adapterNames])!; }
        catch (TargetInvocationException e) { throw e.InnerException!; }
    }

    private static string CopyFixtureAdapter(TempFolder folder, string name, string? ioYaml)
    {
        string target = folder.File(name);
        Directory.CreateDirectory(target);
        foreach (var file in Directory.GetFiles(SharedPaths.Path("fixtures", "stories260K", "alora-q-k-v")))
            File.Copy(file, Path.Combine(target, Path.GetFileName(file)));
        if (ioYaml is not null) File.WriteAllText(Path.Combine(target, "io.yaml"), ioYaml);
        return target;
    }

    [Fact]
    public void IntrinsicFoldersAndAdaptersWithAnIoYamlBecomeIntrinsics()
    {
        using var folder = new TempFolder();
        const string yaml = "model: ~\nresponse_format: ~\ntransformations: ~\ninstruction: \"\\nQ: {q}\"\n";
        using var model = LanguageModel.Load(SharedPaths.Stories260K, cacheTokens: 256);
        model.LoadAdapter("beside", CopyFixtureAdapter(folder, "beside", yaml));
        model.LoadAdapter("plain", CopyFixtureAdapter(folder, "plain", null));
        var intrinsics = LoadInto(model, [$"flagged={CopyFixtureAdapter(folder, "flagged", yaml)}"], ["beside", "plain"]);
        Assert.Equal(["beside", "flagged"], intrinsics.Keys.Order(StringComparer.Ordinal));
        Assert.True(model.Adapters.ContainsKey("flagged"));
        Assert.Equal("\nQ: {q}", intrinsics["flagged"].Instruction);

        var missing = Assert.ThrowsAny<Exception>(() => LoadInto(model, [$"other={CopyFixtureAdapter(folder, "other", null)}"], []));
        Assert.Contains("io.yaml not found", missing.Message);
        var bad = Assert.ThrowsAny<Exception>(() => LoadInto(model, [$"broken={CopyFixtureAdapter(folder, "broken", "model: ~\n")}"], []));
        Assert.Contains("'response_format' is missing", bad.Message);
        Assert.False(model.Adapters.ContainsKey("broken"));   // the definition is read before the adapter is loaded
    }
}
