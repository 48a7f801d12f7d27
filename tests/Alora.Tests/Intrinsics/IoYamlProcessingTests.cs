using System.Text.Json.Nodes;
using Alora.Intrinsics;

namespace Alora.Tests.Intrinsics;

/// <summary>
/// io.yaml processing on fixed inputs and outputs, against values worked out by hand: where the instruction
/// goes, likelihood → score, sentence splitting and marking, and decoding sentence numbers back to spans.
/// </summary>
public sealed class IoYamlProcessingTests
{
    // granite-common's test instruction (tests/.../input_yaml/instruction.yaml), as a Python format string.
    private const string InstructionYaml = """
        # Model name string, or null to use whatever is provided in the chat completion request
        model: ~
        response_format: |
          {
            "type": "string",
            "enum": ["fish", "not fish"]
          }
        transformations: ~
        instruction: |
          {{ This text should be inside curly braces. }}
          Here's the text of the last message: {last_message}
          Does the last message talk about fish? 
          All pets named '{test_kwarg}' are fish.
        parameters:
          temperature: 0.75
        sentence_boundaries: ~
        """;

    private static JsonArray Messages(params (string Role, string Content)[] messages)
        => new([.. messages.Select(m => (JsonNode)new JsonObject { ["role"] = m.Role, ["content"] = m.Content })]);

    [Fact]
    public void InstructionIsFormattedAndAppendedAsTheLastUserTurn()
    {
        var definition = IntrinsicDefinition.Parse(InstructionYaml, "instruction.yaml");
        var call = definition.Prepare(Messages(("assistant", "Welcome to fish detector."), ("user", "I have a pet named George.")),
            arguments: new Dictionary<string, string> { ["test_kwarg"] = "George" });

        // By hand: the two turns unchanged, then one user turn: "{{" → "{", last_message = the last turn's text,
        // the literal block scalar keeps its trailing space and ends with one newline (clip chomping).
        Assert.Equal(3, call.Messages.Count);
        Assert.Equal("Welcome to fish detector.", (string)call.Messages[0]!["content"]!);
        Assert.Equal("I have a pet named George.", (string)call.Messages[1]!["content"]!);
        Assert.Equal("user", (string)call.Messages[2]!["role"]!);
        Assert.Equal("{ This text should be inside curly braces. }\nHere's the text of the last message: I have a pet named George.\nDoes the last message talk about fish? \nAll pets named 'George' are fish.\n",
            (string)call.Messages[2]!["content"]!);
        Assert.Equal(0.75, (double)call.Parameters["temperature"]!);
        Assert.False(call.Parameters.ContainsKey("logprobs"));   // no likelihood rule
        Assert.Equal(Alora.Structured.ConstraintKind.JsonSchema, call.Constraint!.Kind);
        Assert.Equal("""{"type":"string","enum":["fish","not fish"]}""", call.Constraint.Schema!.ToJsonString());

        var missing = Assert.Throws<IntrinsicException>(() => definition.Prepare(Messages(("user", "hi"))));
        Assert.Contains("'test_kwarg'", missing.Message);
    }

    // mellea's requirement-check io.yaml shape: likelihood on ["score"], then nest at the root.
    private const string RequirementYaml = """
        name: requirement-check
        model: ~
        response_format: |
          {
            "type": "object",
            "properties": {"score": {"type": "string", "enum": ["yes", "no"]}},
            "required": ["score"],
            "additionalProperties": false
          }
        transformations:
          - type: likelihood
            categories_to_values:
              "yes": 1.0
              "no": 0.0
            input_path: ["score"]
          - type: nest
            input_path: []
            field_name: "requirement_check"
        instruction: |-
          <requirements>: {requirement}
          Respond with a json {{"score": "yes"}} if the constraints are satisfied or respond with {{"score": "no"}} if not.
        parameters:
          max_completion_tokens: 15
          temperature: 0.0
        sentence_boundaries: ~
        """;

    [Fact]
    public void LikelihoodTurnsTheFirstTokensDistributionIntoAScore()
    {
        var definition = IntrinsicDefinition.Parse(RequirementYaml, "requirement.yaml");
        var call = definition.Prepare(Messages(("user", "Write a haiku."), ("assistant", "Old pond, frog jumps in.")),
            arguments: new Dictionary<string, string> { ["requirement"] = "three lines" });
        Assert.True((bool)call.Parameters["logprobs"]!);
        Assert.Equal(10, (int)call.Parameters["top_logprobs"]!);
        Assert.Equal("<requirements>: three lines\nRespond with a json {\"score\": \"yes\"} if the constraints are satisfied or respond with {\"score\": \"no\"} if not.",
            (string)call.Messages[^1]!["content"]!);

        // {"score": "yes"}: the value's first character is at offset 11, where the token "yes" starts.
        // p(yes) = 0.8, p(no) = 0.15, p(maybe) = 0.05 (no category starts with it; "yes" repeated is not counted twice).
        // Score = (0.8·1 + 0.15·0) / (0.8 + 0.15) = 16/19.
        var tokens = new List<OutputToken>
        {
            new("{\"", -0.01, []), new("score", -0.01, []), new("\":", -0.01, []), new(" \"", -0.01, []),
            new("yes", Math.Log(0.8), [new("yes", Math.Log(0.8)), new("no", Math.Log(0.15)), new("maybe", Math.Log(0.05))]),
            new("\"}", -0.01, []),
        };
        var result = definition.ProcessOutput("{\"score\": \"yes\"}", tokens, call)!;
        Assert.Equal(16.0 / 19.0, (double)result["requirement_check"]!["score"]!, 1e-15);

        // With "no" chosen: 0.15·0 + 0.8·1 (the alternative "yes") over the same total: still 16/19.
        var noTokens = tokens.ToList();
        noTokens[4] = new("no", Math.Log(0.15), [new("yes", Math.Log(0.8)), new("no", Math.Log(0.15))]);
        Assert.Equal(16.0 / 19.0, (double)definition.ProcessOutput("{\"score\": \"no\"}", noTokens, call)!["requirement_check"]!["score"]!, 1e-15);

        // A value inside one token that ends with its JSON text maps straight to its category: no weights.
        var whole = new List<OutputToken> { new("{\"score\":", -0.1, []), new(" \"no\"", -0.2, []), new("}", 0, []) };
        Assert.Equal(0.0, (double)definition.ProcessOutput("{\"score\": \"no\"}", whole, call)!["requirement_check"]!["score"]!);
        // Without logprobs the rule cannot run.
        Assert.Contains("logprobs", Assert.Throws<IntrinsicException>(() => definition.ProcessOutput("{\"score\": \"no\"}", null, call)).Message);
    }

    [Fact]
    public void UncertaintyMatchesGraniteCommonsCannedResult()
    {
        // granite-common's canned uncertainty output: "1" was generated; its top-10 alternatives are the ten digits.
        // Categories map digit k to 0.1·k + 0.05; the expected value Σ p_k (0.1k + 0.05) / Σ p_k is granite-common's
        // own expected result 0.44682381241838287 (test_canned_output/expected_result/uncertainty.json).
        const string yaml = """
            model: ~
            response_format: |
              {"type": "integer", "enum": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]}
            transformations:
              - type: likelihood
                categories_to_values:
                  0: 0.05
                  1: 0.15
                  2: 0.25
                  3: 0.35
                  4: 0.45
                  5: 0.55
                  6: 0.65
                  7: 0.75
                  8: 0.85
                  9: 0.95
                input_path: []
              - type: nest
                input_path: []
                field_name: "certainty"
            instruction: ~
            parameters: {max_completion_tokens: 2}
            sentence_boundaries: ~
            """;
        var definition = IntrinsicDefinition.Parse(yaml);
        (string, double)[] top = [("1", -0.9768693447113037), ("8", -1.9768693447113037), ("5", -2.4768693447113037), ("9", -2.4768693447113037),
            ("2", -2.6018693447113037), ("7", -2.7268693447113037), ("3", -2.7268693447113037), ("6", -2.8518693447113037),
            ("4", -3.2268693447113037), ("0", -4.226869583129883)];
        var tokens = new List<OutputToken> { new("1", -0.9768693447113037, [.. top.Select(t => new TokenAlternative(t.Item1, t.Item2))]), new("", 0, []) };
        string text = definition.ProcessOutputText("1", tokens, definition.Prepare(Messages(("user", "Which of my pets have fleas?"))));
        Assert.Equal("{\"certainty\": 0.44682381241838287}", text);

        // mellea's newer uncertainty io.yaml: {"score": "1"} with string categories, then project renames score.
        var mellea = IntrinsicDefinition.Parse(yaml
            .Replace("{\"type\": \"integer\", \"enum\": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]}", "{\"type\": \"object\", \"properties\": {\"score\": {\"type\": \"string\"}}}")
            .Replace("input_path: []\n  - type: nest\n    input_path: []\n    field_name: \"certainty\"", "input_path: [\"score\"]\n  - type: project\n    input_path: []\n    retained_fields:\n      score: \"certainty\"")
            .Replace("      0: 0.05", "      \"0\": 0.05").Replace("      1: 0.15", "      \"1\": 0.15").Replace("      2: 0.25", "      \"2\": 0.25")
            .Replace("      3: 0.35", "      \"3\": 0.35").Replace("      4: 0.45", "      \"4\": 0.45").Replace("      5: 0.55", "      \"5\": 0.55")
            .Replace("      6: 0.65", "      \"6\": 0.65").Replace("      7: 0.75", "      \"7\": 0.75").Replace("      8: 0.85", "      \"8\": 0.85").Replace("      9: 0.95", "      \"9\": 0.95"));
        Assert.IsType<ProjectRule>(mellea.Transformations[1]);
        var scoreTokens = new List<OutputToken> { new("{\"", 0, []), new("score", 0, []), new("\": \"", 0, []), tokens[0], new("\"}", 0, []) };
        Assert.Equal("{\"certainty\": 0.44682381241838287}", mellea.ProcessOutputText("{\"score\": \"1\"}", scoreTokens, null));
        // The same output against integer categories: the string "1" is not the integer 1, and only alternatives match.
        Assert.NotEqual(text, definition.ProcessOutputText("\"1\"", [new("\"", 0, []), tokens[0], new("\"", 0, [])], null));
    }

    [Fact]
    public void SentencesAreSplitMarkedAndDecodedBackToSpans()
    {
        // Punkt without training: "1964." before a capital breaks; the initial "J." and the ellipsis do not.
        const string message = "Murdoch expanded in Australia. He bought a paper in 1964. J. Smith helped... then left! Why?";
        Assert.Equal(["Murdoch expanded in Australia.", "He bought a paper in 1964.", "J. Smith helped... then left!", "Why?"], SentenceSplitter.Split(message));
        Assert.Equal(["It is page 3. then more.", "Done."], SentenceSplitter.Split("It is page 3. then more. Done."));
        Assert.Equal(["He said \"stop.\"", "Then he left."], SentenceSplitter.Split("He said \"stop.\" Then he left."));

        const string yaml = """
            model: ~
            response_format: ~
            transformations:
              - type: explode
                input_path: []
                target_field: "c"
              - type: decode_sentences
                source: "last_message"
                input_path: [~, "r"]
                output_names:
                  begin: "response_begin"
                  end: "response_end"
                  text: "response_text"
              - type: decode_sentences
                source: "documents"
                input_path: [~, "c"]
                output_names:
                  document_id: "citation_doc_id"
                  begin: "citation_begin"
                  end: "citation_end"
                  text: "citation_text"
              - type: project
                input_path: []
                retained_fields: ["response_text", "citation_doc_id", "citation_begin", "citation_end"]
            instruction: "Find the citations."
            parameters: ~
            sentence_boundaries:
              last_message: "r"
              documents: "c"
            """;
        var definition = IntrinsicDefinition.Parse(yaml);
        var call = definition.Prepare(Messages(("user", "Where?"), ("assistant", message)),
            [new IntrinsicDocument("My dog has fleas.", "a"), new IntrinsicDocument("My cat does not. It is clean.", "b")]);
        Assert.Equal("<r0> Murdoch expanded in Australia. <r1> He bought a paper in 1964. <r2> J. Smith helped... then left! <r3> Why?", (string)call.Messages[1]!["content"]!);
        Assert.Equal("Find the citations.", (string)call.Messages[2]!["content"]!);
        Assert.Equal(["<c0> My dog has fleas.", "<c1> My cat does not. <c2> It is clean."], call.Documents.Select(d => d.Text));

        // Response sentence 1 "He bought a paper in 1964. " starts after "Murdoch expanded in Australia. " (31
        // characters) and is 27 long (the space before the next marker included): [31, 58). Document sentence 2
        // "It is clean." is the second sentence of document b, after "My cat does not. " (17): [17, 29).
        var result = definition.ProcessOutput("[{\"r\": 1, \"c\": [2, 0]}]", null, call)!;
        Assert.Equal(
            """[{"response_text": "He bought a paper in 1964. ", "citation_doc_id": "b", "citation_begin": 17, "citation_end": 29}, {"response_text": "He bought a paper in 1964. ", "citation_doc_id": "a", "citation_begin": 0, "citation_end": 17}]""",
            PythonJson.Dumps(result));
    }

    [Fact]
    public void DocumentsGoIntoAFirstMessageWhenTheIntrinsicAsks()
    {
        IntrinsicDocument[] docs = [new("My dog has fleas.", "1"), new("My cat does not have fleas.", "2")];
        JsonArray messages = Messages(("user", "Which pets have fleas?"));
        string Yaml(string how) => $"model: ~\nresponse_format: ~\ntransformations: ~\ndocs_as_message: {how}\n";

        var asString = IntrinsicDefinition.Parse(Yaml("string")).Prepare(messages, docs);
        Assert.Equal("You have access to the following documents:\n\n[Document 1]\nMy dog has fleas.\n\n[Document 2]\nMy cat does not have fleas.", (string)asString.Messages[0]!["content"]!);
        Assert.Empty(asString.Documents);

        var asJson = IntrinsicDefinition.Parse(Yaml("json")).Prepare(messages, docs);
        Assert.Equal("""[{"text": "My dog has fleas.", "doc_id": "1"}, {"text": "My cat does not have fleas.", "doc_id": "2"}]""", (string)asJson.Messages[0]!["content"]!);

        var asRoles = IntrinsicDefinition.Parse(Yaml("roles")).Prepare(messages, docs);
        Assert.Equal(["document 1", "document 2", "user"], asRoles.Messages.Select(m => (string)m!["role"]!));

        var viaTemplate = IntrinsicDefinition.Parse(Yaml("~")).Prepare(messages, docs);
        Assert.Single(viaTemplate.Messages);
        Assert.Equal(docs, viaTemplate.Documents);
    }

    [Fact]
    public void BadDefinitionsNameTheFileLineAndField()
    {
        var tab = Assert.Throws<YamlException>(() => IntrinsicDefinition.Parse("model: ~\nparameters:\n\ttemperature: 0\n", "bad.yaml"));
        Assert.Equal((3, 1), (tab.Line, tab.Column));
        Assert.Contains("tab", tab.Message);

        var anchor = Assert.Throws<YamlException>(() => IntrinsicDefinition.Parse("model: &m x\n", "bad.yaml"));
        Assert.Contains("anchors", anchor.Message);
        Assert.Equal((1, 8), (anchor.Line, anchor.Column));

        var unknown = Assert.Throws<IntrinsicException>(() => IntrinsicDefinition.Parse("model: ~\nresponse_format: ~\ntransformations: ~\nprompt: x\n", "io.yaml"));
        Assert.Contains("io.yaml, line 4, column 1: unexpected top-level field 'prompt'", unknown.Message);

        var missing = Assert.Throws<IntrinsicException>(() => IntrinsicDefinition.Parse("model: ~\nresponse_format: ~\n", "io.yaml"));
        Assert.Contains("'transformations' is missing", missing.Message);

        var rule = Assert.Throws<IntrinsicException>(() => IntrinsicDefinition.Parse("model: ~\nresponse_format: ~\ntransformations:\n  - type: nest\n    input_path: []\n    field: x\n", "io.yaml"));
        Assert.Contains("transformations[0]", rule.Message);
        Assert.Contains("field_name", rule.Message);

        var json = Assert.Throws<IntrinsicException>(() => IntrinsicDefinition.Parse("model: ~\nresponse_format: '{\"type\": '\ntransformations: ~\n", "io.yaml"));
        Assert.Contains("io.yaml, line 2, column 18: response_format is not valid JSON", json.Message);
    }

    [Fact]
    public void YamlScalarsResolveAsPyYamlDoes()
    {
        var node = (YamlMapping)YamlReader.Parse("""
            a: yes
            b: "yes"
            c: 010
            d: 1e5
            e: 1.5e+3
            f: ~
            g: >-
              folded
              text

              kept
            h: [1, "two", {x: null}]
            i: 'it''s'
            """)!;
        var json = node.ToJson();
        Assert.Equal("""{"a": true, "b": "yes", "c": 8, "d": "1e5", "e": 1500.0, "f": null, "g": "folded text\nkept", "h": [1, "two", {"x": null}], "i": "it's"}""", PythonJson.Dumps(json));
    }

    [Fact]
    public void YamlBlockStructuresAndTheirErrors()
    {
        // A sequence at its key's indent, mappings inside sequence items, a keep-chomped literal, comments everywhere.
        var node = (YamlMapping)YamlReader.Parse("""
            --- # a document marker
            list:
            - type: a   # trailing comment
              path: [x, ~, 2]
            -
              type: b
            text: |+
              kept

            end: "two\tparts"
            """)!;
        Assert.Equal("""{"list": [{"type": "a", "path": ["x", null, 2]}, {"type": "b"}], "text": "kept\n\n", "end": "two\tparts"}""", PythonJson.Dumps(node.ToJson()));

        var continued = Assert.Throws<YamlException>(() => YamlReader.Parse("a: one\n  two\nb: 1\n", "x.yaml"));
        Assert.Equal(2, continued.Line);
        Assert.Contains("indentation", continued.Message);
        var duplicate = Assert.Throws<YamlException>(() => YamlReader.Parse("a: 1\na: 2\n", "x.yaml"));
        Assert.Contains("duplicate key \"a\"", duplicate.Message);
        var unclosed = Assert.Throws<YamlException>(() => YamlReader.Parse("a: [1, 2\nb: 3\n", "x.yaml"));
        Assert.Contains("expected ',' or ']'", unclosed.Message);
        var twoDocuments = Assert.Throws<YamlException>(() => YamlReader.Parse("a: 1\n---\nb: 2\n", "x.yaml"));
        Assert.Contains("second YAML document", twoDocuments.Message);
    }
}
