namespace Alora.Tokenization;

/// <summary>What a split does with the delimiters it finds (tokenizers' SplitDelimiterBehavior).</summary>
internal enum SplitBehavior
{
    /// <summary>Delimiters are dropped.</summary>
    Removed,
    /// <summary>Each delimiter becomes a piece of its own.</summary>
    Isolated,
    /// <summary>A delimiter is glued to the end of the piece before it.</summary>
    MergedWithPrevious,
    /// <summary>A delimiter is glued to the start of the piece after it.</summary>
    MergedWithNext,
    /// <summary>Consecutive delimiters form one piece.</summary>
    Contiguous,
}

/// <summary>Turns a list of (range, is-delimiter) runs that cover a piece into the pieces a behavior keeps.</summary>
internal static class Splitter
{
    /// <param name="runs">Consecutive runs covering the piece, in order: (start, length, isDelimiter).</param>
    public static void Apply(Piece piece, List<(int Start, int Length, bool IsDelimiter)> runs, SplitBehavior behavior, List<Piece> output)
    {
        switch (behavior)
        {
            case SplitBehavior.Isolated:
                foreach (var run in runs) Emit(piece, run.Start, run.Length, output);
                break;
            case SplitBehavior.Removed:
                foreach (var run in runs) if (!run.IsDelimiter) Emit(piece, run.Start, run.Length, output);
                break;
            case SplitBehavior.Contiguous:
                // A delimiter run joins the pending piece when that piece is a delimiter run too.
                FoldForward(piece, runs, output, (isDelimiter, previousDelimiter) => isDelimiter && previousDelimiter);
                break;
            case SplitBehavior.MergedWithPrevious:
                // A delimiter run joins the pending piece when that piece is not a delimiter run.
                FoldForward(piece, runs, output, (isDelimiter, previousDelimiter) => isDelimiter && !previousDelimiter);
                break;
            case SplitBehavior.MergedWithNext:
            {
                // Walk backwards: a delimiter joins the piece that follows it (tokenizers folds from the right).
                var reversed = new List<(int Start, int End)>();
                bool previousDelimiter = false;
                for (int i = runs.Count - 1; i >= 0; i--)
                {
                    var run = runs[i];
                    if (run.IsDelimiter && !previousDelimiter && reversed.Count > 0)
                        reversed[^1] = (run.Start, reversed[^1].End);
                    else
                        reversed.Add((run.Start, run.Start + run.Length));
                    previousDelimiter = run.IsDelimiter;
                }
                for (int i = reversed.Count - 1; i >= 0; i--) Emit(piece, reversed[i].Start, reversed[i].End - reversed[i].Start, output);
                break;
            }
        }
    }

    /// <summary>
    /// Walks the runs left to right, extending the pending piece with a run when <paramref name="joins"/>(run is a
    /// delimiter, the previous run was) holds, and emitting it otherwise.
    /// </summary>
    private static void FoldForward(Piece piece, List<(int Start, int Length, bool IsDelimiter)> runs, List<Piece> output,
        Func<bool, bool, bool> joins)
    {
        int pendingStart = -1, pendingEnd = -1;
        bool previousDelimiter = false;
        foreach (var run in runs)
        {
            if (pendingStart >= 0 && joins(run.IsDelimiter, previousDelimiter)) pendingEnd = run.Start + run.Length;
            else
            {
                if (pendingStart >= 0) Emit(piece, pendingStart, pendingEnd - pendingStart, output);
                pendingStart = run.Start; pendingEnd = run.Start + run.Length;
            }
            previousDelimiter = run.IsDelimiter;
        }
        if (pendingStart >= 0) Emit(piece, pendingStart, pendingEnd - pendingStart, output);
    }

    private static void Emit(Piece piece, int start, int length, List<Piece> output)
    {
        if (length > 0) output.Add(piece.Slice(start, length));
    }

    public static SplitBehavior Parse(string? name, string where) => name switch
    {
        "Removed" => SplitBehavior.Removed,
        "Isolated" => SplitBehavior.Isolated,
        "MergedWithPrevious" => SplitBehavior.MergedWithPrevious,
        "MergedWithNext" => SplitBehavior.MergedWithNext,
        "Contiguous" => SplitBehavior.Contiguous,
        _ => throw new InvalidDataException($"{where}: unknown split behavior '{name}'; expected Removed, Isolated, MergedWithPrevious, MergedWithNext or Contiguous."),
    };
}
