namespace Alora.Tests;

/// <summary>Finds ../shared relative to the repository root (the folder holding Alora.slnx).</summary>
public static class SharedPaths
{
    public static string RepositoryRoot { get; } = FindRepositoryRoot();
    public static string Root { get; } = System.IO.Path.GetFullPath(System.IO.Path.Combine(RepositoryRoot, "..", "shared"));

    public static string Path(params string[] parts) => System.IO.Path.Combine([Root, .. parts]);

    public static string Stories260K => Path("models", "stories260K");

    private static string FindRepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(System.IO.Path.Combine(dir.FullName, "Alora.slnx"))) return dir.FullName;
        throw new DirectoryNotFoundException($"no Alora.slnx above {AppContext.BaseDirectory}");
    }
}
