namespace Alora.Bench;

internal static class BenchPaths
{
    /// <summary>../shared next to the repository root (the folder holding Alora.slnx above the bench binary).</summary>
    public static string SharedRoot() => Path.GetFullPath(Path.Combine(RepoRoot(), "..", "shared"));

    /// <summary>The repository root: the folder holding Alora.slnx above the bench binary.</summary>
    public static string RepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Alora.slnx"))) return dir.FullName;
        throw new DirectoryNotFoundException("no Alora.slnx above the bench binary");
    }
}
