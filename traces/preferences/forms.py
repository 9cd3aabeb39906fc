"""The compare page's preference form."""

from __future__ import annotations

from django import forms

from traces.validation import NOTE_MAX


class PreferenceForm(forms.Form):
    """Which of the two compared traces is better, with an optional note."""

    base = forms.IntegerField(min_value=1, label="Trace A")
    other = forms.IntegerField(min_value=1, label="Trace B")
    better = forms.ChoiceField(choices=[("base", "A is better"), ("other", "B is better")])
    note = forms.CharField(required=False, max_length=NOTE_MAX, widget=forms.Textarea(attrs={"rows": 2}))

    def clean_note(self) -> str:
        note: str = self.cleaned_data["note"]
        if "\x00" in note:
            raise forms.ValidationError("Must not contain NUL characters.")
        return note
