namespace Alora.Structured;

/// <summary>Builds the byte grammar of a request's constraint.</summary>
internal static class ConstraintGrammar
{
    public static ByteGrammar Build(OutputConstraint c)
    {
        switch (c.Kind)
        {
            case ConstraintKind.JsonObject:
                return JsonSchemaGrammar.AnyObject(c.JsonWhitespace);
            case ConstraintKind.JsonSchema:
                return JsonSchemaGrammar.Compile(c.Schema!, c.JsonWhitespace);
            case ConstraintKind.Choice:
            {
                var b = new GrammarBuilder();
                for (int i = 0; i < c.Choices.Count; i++)
                    if (c.Choices[i].Length == 0) throw new StructuredOutputException($"choice {i} is empty (a choice must have at least one character)", $"choice {i}");
                return b.Build(b.Add("root", GExpr.Alt([.. c.Choices.Select(GExpr.Literal)])));
            }
            case ConstraintKind.Regex:
            {
                var b = new GrammarBuilder();
                string pattern = c.Text!;
                return b.Build(b.Add("root", RegexGrammar.Compile(pattern, jsonString: false, "regex")));
            }
            case ConstraintKind.Grammar:
                return GbnfGrammar.Compile(c.Text!);
            default:
                throw new ArgumentOutOfRangeException(nameof(c), c.Kind, "unknown constraint kind");
        }
    }
}
