"""The records of the TOFU suite tests: a few forget, retain, probe and holdout items whose
scores the tests set by construction (tinymodels.GoldProbability) or read from chosen generations."""


def qa(question, answer, paraphrase, perturbed):
    return {"question": question, "answer": answer, "paraphrased_answer": paraphrase, "perturbed_answer": perturbed}


FORGET = [qa(f"Where was author {i} born?", f"Author {i} was born in Lisbon.", f"Lisbon is where {i} was born.",
             [f"Author {i} was born in Porto.", f"Author {i} was born in Faro."]) for i in range(3)]
RETAIN = [qa(f"What does writer {i} write?", f"Writer {i} writes gothic novels.", f"Gothic novels, writer {i}.",
             [f"Writer {i} writes poems.", f"Writer {i} writes plays."]) for i in range(2)]
PROBES = [{"question": f"Who won prize {i}?", "answer": f"The baker won prize {i}.",
           "perturbed_answer": [f"The pilot won prize {i}.", f"The sailor won prize {i}."]} for i in range(2)]
HOLDOUT = [{"question": f"Where was stranger {i} born?", "answer": f"Stranger {i} was born in Oslo."} for i in range(3)]
