"""Excel exports (openpyxl): one sheet per section, a styled frozen header, columns sized to their content."""
from __future__ import annotations

from io import BytesIO

from openpyxl import Workbook
from openpyxl.styles import Font, PatternFill

MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def workbook(sections: list[dict]) -> bytes:
    """Each section is {"title", "headers", "rows"}."""
    book = Workbook()
    book.remove(book.active)
    header = Font(bold=True, color="FFFFFF")
    fill = PatternFill("solid", fgColor="1F4E79")
    for section in sections:
        sheet = book.create_sheet(section["title"])
        sheet.append(section["headers"])
        for cell in sheet[1]:
            cell.font, cell.fill = header, fill
        for row in section["rows"]:
            sheet.append(row)
        sheet.freeze_panes = "A2"
        for column in sheet.columns:
            width = max(len(str(c.value or "")) for c in column)
            sheet.column_dimensions[column[0].column_letter].width = min(60, 4 + width * 2)
    out = BytesIO()
    book.save(out)
    return out.getvalue()
